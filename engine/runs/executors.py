"""Which way a run executes: one process (local), one shard (`--shard I/N`), or Ray tasks (SPEC 12, 13).

All three compute the same rows for the same RunConfig; only where they run and how they reach the
warehouse differ (directly, a shard for `ingest shards`, or shards merged by the Ray driver).
`execute` is what `python cli.py run` calls (it returns the summary the command prints);
`run_experiment` is the same from Python, returning the run as a `warehouse.handle.Run`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from engine.runs.config import EXECUTORS, Execution, RunConfig
from engine.runs.local import execute_run
from engine.runs.plan import resolve_top_heads

if TYPE_CHECKING:
    from warehouse.handle import Run
    from warehouse.store import Warehouse


def execute(req: RunConfig, db: str, how: Execution, progress: bool = True) -> dict:
    """Run `req` the way `how` says; the summary has "shard" when only a shard was written."""
    req = resolve_top_heads(req, db)  # --top-heads K@RUN: the heads themselves, before anything plans
    if how.executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}")
    ray_only = [
        flag
        for flag, value in (
            ("--workers", how.workers),
            ("--shards", how.shards),
            ("--ray-address", how.ray_address),
        )
        if value is not None
    ]
    if req.max_memory is not None and (how.executor == "ray" or how.shard):
        raise ValueError(
            "--max-memory chooses the batch size of a local run; every worker of a sharded or Ray run needs "
            "the same --batch-size (a local run's memory line gives the estimate)"
        )
    if how.executor == "ray":
        if how.shard:
            raise ValueError("--shard is what each Ray task does; give either --shard or --executor ray")
        from engine.runs.ray import run_ray

        return run_ray(
            req, db, how.workers or 1, how.shards, how.ray_address, how.run_id, how.shard_dir, progress
        )
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)} apply to --executor ray")
    if how.shard:
        from engine.runs.sharded import parse_shard, run_shard

        index, count = parse_shard(how.shard)
        return run_shard(
            req, index, count, db=db, shard_dir=how.shard_dir, run_id=how.run_id, progress=progress
        )
    if how.run_id or how.shard_dir:
        raise ValueError("--run-id and --shard-dir apply to --shard and --executor ray")
    return execute_run(req, db, progress)


def run_experiment(
    config: RunConfig,
    warehouse: str | os.PathLike | Warehouse,
    *,
    execution: Execution | None = None,
    progress: bool = False,
) -> Run:
    """Run `config` into `warehouse` (a folder, or an open Warehouse) as `python cli.py run` does, and return
    the run: `run_experiment(RunConfig(problems=8), "results/w").view("token_importance")`.

    `execution`: how to run it (default: this process). A shard written as a portable file for
    `ingest shards` is not in the warehouse yet: that is an error here (use `execute` for such workers).
    """
    from warehouse.store import Warehouse, open_warehouse

    db = warehouse.path if isinstance(warehouse, Warehouse) else warehouse
    summary = execute(config, str(db), execution or Execution(), progress)
    if summary.get("shard") and summary.get("shard_dir"):
        raise ValueError(
            f"shard {summary['shard']} of run {summary['run_id']} was written to {summary['path']}, "
            f"not into the warehouse; merge it with `python cli.py ingest shards {summary['shard_dir']}`"
        )
    wh = warehouse if isinstance(warehouse, Warehouse) else open_warehouse(db, read_only=True)
    return wh.run(summary["run_id"])
