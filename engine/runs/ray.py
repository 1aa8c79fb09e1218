"""`run --executor ray`: the shards of `run --shard I/N` as Ray tasks, merged into the warehouse at the end.

Each task runs one shard through `engine.runs.sharded.run_shard` (the code path of `--shard I/N`), on one GPU
when the cluster has GPUs, else on CPU cores split evenly between the workers (torch threads set to
match, so workers do not oversubscribe the cores). A task whose worker dies is retried by Ray (up to
three times); the dead worker's half-written shard is a hidden temp directory that ingest ignores, and
the retry writes the shard whole. When every shard is written the driver merges them with
`ingest.shards.ingest_shards`, which is idempotent. Running the same command again skips finished
shards. Multi-node clusters need the shard directory (next to the warehouse) on a shared filesystem.

With a PostgreSQL catalog (and no --shard-dir) the tasks commit straight into the warehouse, as
`run --shard I/N` does there; the last one completes the run and the driver merges nothing. A retried
task skips the batches its dead attempt committed.

Ray is an optional extra; it is imported only here, only when this executor is asked for.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from engine.runs.config import RunConfig
from engine.runs.plan import pick_device, plan_run
from engine.runs.sharded import check_shard_dir, default_shard_dir, run_id_for, run_shard
from warehouse import lake

MAX_RETRIES = 3
SHARDS_PER_WORKER = 4  # default: finer progress and smaller retries; each shard repeats the donor-pool pass
INSTALL_HINT = 'Ray is not installed; install the extra with: pip install -e ".[ray]"'


class ShardFailed(ChildProcessError):
    """A shard's task failed for good (after Ray's retries); finished shards are kept for a rerun."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return ray


_MODELS: dict = {}


def worker_model(req: RunConfig):
    """One loaded model per worker process, kept between the tasks that process runs."""
    key = (req.model, req.checkpoint, req.device, req.dtype)
    if key not in _MODELS:
        from engine.model.checkpoints import load_model

        _MODELS.clear()
        device, dtype = pick_device(req.device, req.dtype)
        _MODELS[key] = load_model(req.model, checkpoint=req.checkpoint, device=device, dtype=dtype)
    return _MODELS[key]


def shard_task(
    req: RunConfig,
    index: int,
    count: int,
    shard_dir: str | None,
    run_id: str,
    threads: int | None,
    db: str | None = None,
) -> dict:
    """One Ray task: one shard, written to `shard_dir`, or committed into the warehouse `db` when
    shard_dir is None (what `run --shard index/count` does)."""
    if threads:
        torch.set_num_threads(threads)
    return run_shard(
        req, index, count, db=db, shard_dir=shard_dir, run_id=run_id, model=worker_model(req), progress=False
    )


def run_ray(
    req: RunConfig,
    db: str,
    workers: int,
    shards: int | None = None,
    address: str | None = None,
    run_id: str | None = None,
    shard_dir: str | None = None,
    progress: bool = True,
    task: Callable[..., dict] = shard_task,
) -> dict:
    """Run `req` as `shards` Ray tasks, at most `workers` at a time, then ingest.

    `shards` defaults to 4 per worker, at most one per batch; it fixes the slicing, so a rerun that
    should skip finished shards needs the same count (the same --workers, or --shards).

    `address`: an existing cluster (`ray start --head` / `ray://...`), else a local one is started (or
    the one this process already joined is used). `task` is called as
    task(req, index, count, shard_dir, run_id, threads) on the workers, or with shard_dir None and
    db=<warehouse> when the tasks commit directly (PostgreSQL catalog, no `shard_dir` given).
    """
    ray = import_ray()
    if req.resume:
        raise ValueError(
            "--resume does not apply to --executor ray: run the same command again, finished "
            "shards are skipped"
        )
    if workers < 1 or (shards is not None and shards < 1):
        raise ValueError("--workers and --shards must be at least 1")
    started = time.time()
    plan = plan_run(
        dataclasses.replace(req, device="cpu")
    )  # the run id and problem count, as workers find them
    run_id, _ = run_id_for(plan.config, run_id)
    n_problems, n_conditions = len(plan.problems), len(plan.conditions)
    del plan
    direct = shard_dir is None and lake.takes_concurrent_writers(db)
    directory = None if direct else str(shard_dir or default_shard_dir(db, run_id))
    if directory is not None:
        check_shard_dir(Path(directory), db)
    count = shards or max(1, min(-(-n_problems // req.batch_size), SHARDS_PER_WORKER * workers))

    own_cluster = not ray.is_initialized()
    if own_cluster:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        cpus = 1 if gpus else max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
        remote = ray.remote(task).options(num_gpus=gpus, num_cpus=cpus, max_retries=MAX_RETRIES)
        summaries = _drive(
            ray,
            remote,
            req,
            count,
            directory,
            run_id,
            None if gpus else cpus,
            workers,
            n_problems,
            progress,
            {"db": str(db)} if direct else {},
        )
    finally:
        if own_cluster:
            ray.shutdown()

    if direct:
        from warehouse.store import open_warehouse

        run = open_warehouse(db, read_only=True).show_run(run_id)
        merged = {
            "status": run["status"],
            "problems_committed": run["rows"].get("run_problems"),
            "problems_planned": run["n_problems_planned"],
        }
        where = f"the warehouse {db}"
    else:
        from ingest.shards import ingest_shards

        merged = next(r for r in ingest_shards(db, directory)["runs"] if r["run_id"] == run_id)
        where = f"merging {directory}"
    if merged["status"] != "complete":
        raise ValueError(
            f"run {run_id}: {merged['problems_committed']} of {merged['problems_planned']} problems "
            f"in {where}"
        )
    return {
        "run_id": run_id,
        "status": merged["status"],
        "problems": n_problems,
        "conditions": n_conditions,
        "seconds": round(time.time() - started, 2),
        "executor": "ray",
        "workers": workers,
        "shards": count,
        "shards_skipped": sum(s["status"] == "skipped" for s in summaries),
        "shard_dir": directory,
    }


def _drive(
    ray, remote, req, count, directory, run_id, threads, workers, n_problems, progress, extra: dict
) -> list[dict]:
    """Keep at most `workers` shard tasks in flight; progress in problems as shards finish."""
    todo, pending, done = list(range(count)), {}, []
    kept = (
        f"finished shards are kept in {directory}"
        if directory
        else f"committed batches stay in run {run_id}, which stays running"
    )
    bar = tqdm(
        total=n_problems,
        desc=f"run {run_id} ({count} shards)",
        unit="problem",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        while todo or pending:
            while todo and len(pending) < workers:
                index = todo.pop(0)
                pending[remote.remote(req, index, count, directory, run_id, threads, **extra)] = index
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                try:
                    summary = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise ShardFailed(
                        f"shard {index}/{count} failed: {_cause(exc)}; {kept}, run the same "
                        "command again to finish"
                    ) from exc
                except ray.exceptions.RayError as exc:
                    raise ShardFailed(
                        f"shard {index}/{count} failed after {MAX_RETRIES} retries "
                        f"({type(exc).__name__}); {kept}, run the same command again to "
                        "finish"
                    ) from exc
                done.append(summary)
                bar.update(summary["problems"])
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
    return done


def _cause(exc) -> str:
    """The worker's own exception as one line."""
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
