"""Which way `run` executes: one process (local), one shard (`--shard I/N`), or Ray tasks (SPEC 12, 13).

All three compute the same rows for the same flags; only where they run and how they reach the
warehouse differ (directly, a shard for `ingest shards`, or shards merged by the Ray driver).
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.run import RunRequest, execute_run

EXECUTORS = ("local", "ray")


@dataclass
class Execution:
    executor: str = "local"
    shard: str | None = None  # "I/N"
    workers: int | None = None
    shards: int | None = None
    ray_address: str | None = None
    run_id: str | None = None
    shard_dir: str | None = None


def execute(req: RunRequest, db: str, how: Execution, progress: bool = True) -> dict:
    """Run `req` the way `how` says; the summary has "shard" when only a shard was written."""
    if how.executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}")
    ray_only = [flag for flag, value in (("--workers", how.workers), ("--shards", how.shards),
                                         ("--ray-address", how.ray_address)) if value is not None]
    if how.executor == "ray":
        if how.shard:
            raise ValueError("--shard is what each Ray task does; give either --shard or --executor ray")
        from engine.distributed import run_ray

        return run_ray(req, db, how.workers or 1, how.shards, how.ray_address, how.run_id, how.shard_dir,
                       progress)
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)} apply to --executor ray")
    if how.shard:
        from engine.sharded import parse_shard, run_shard

        index, count = parse_shard(how.shard)
        return run_shard(req, index, count, db=db, shard_dir=how.shard_dir, run_id=how.run_id, progress=progress)
    if how.run_id or how.shard_dir:
        raise ValueError("--run-id and --shard-dir apply to --shard and --executor ray")
    return execute_run(req, db, progress)
