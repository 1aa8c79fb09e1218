"""`run --shard I/N`: one worker's slice of a run, written as a Parquet shard (SPEC 12).

This is what a Slurm array task (or any scheduler's job) runs; `ingest shards DIR` merges the shards
into the warehouse, and the Ray executor runs the same function as Ray tasks.

Slicing: the run's ordered problem list is cut into batches of `--batch-size` problems, exactly as a
single-process run cuts it, and shard I of N takes batches I, I+N, I+2N, ... (round-robin, so the
difficulty strata spread over the shards). Since every batch holds the same problems as in a
single-process run, and the donor pool of `random`/`mean` is computed from the whole problem set, every
row is bit-for-bit the row a single-process run computes on the same device (left-padded batches of
other problems would change floats in the 7th digit). All workers of a run must therefore use the same
flags, `--batch-size` included; a worker that finds a finished sibling shard sliced differently stops.

A worker writes into a hidden temp directory and publishes its shard with one rename (ingest.shards),
so a killed worker leaves debris that ingest ignores; a finished shard is skipped when run again.

When the warehouse's catalog is PostgreSQL (`init --catalog postgres:DSN`) and no --shard-dir is given,
workers commit straight into the warehouse instead, concurrently (Warehouse.join_run): each batch is
one commit, a problem's ordinal is its position in the run's problem order, a worker run again skips
its committed batches, and the worker that commits the run's last problem completes the run. A worker
that fails leaves the run running with its committed batches; run the same shard again.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from engine.interventions.chunk import run_chunk
from engine.runs.config import RunConfig
from engine.runs.local import ChunkWriter, donor_sites
from engine.runs.plan import plan_run
from ingest.problems import problems_table as problems_frame  # the `problems` rows ingest writes
from ingest.shards import MANIFEST, ShardWriter, default_run_id, find_shards, read_manifest, shard_name
from warehouse import lake, lineage


def parse_shard(spec: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N (0-based, like Slurm's default array indices)."""
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected I/N, e.g. 0/16") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {spec}: need 0 <= I < N (shards are numbered from 0)")
    return index, count


def shard_batches(problems: list, batch_size: int, index: int, count: int) -> list[list]:
    """Batches I, I+N, ... of the run's batches (the batches a single-process run makes)."""
    batches = [problems[i : i + batch_size] for i in range(0, len(problems), batch_size)]
    return batches[index::count]


def default_shard_dir(db: str | Path, run_id: str) -> Path:
    """Where a run's shards go unless --shard-dir says otherwise: next to the warehouse, one dir per run."""
    folder = Path(db).absolute()
    return folder.with_name(folder.name + ".worker-shards") / run_id


def check_shard_dir(directory: Path, db: str | Path | None) -> None:
    """Shards are portable files to merge, never part of a warehouse: refuse a directory inside its folder."""
    if db is None:
        return
    folder, target = Path(db).resolve(), Path(directory).resolve()
    if target == folder or folder in target.parents:
        raise ValueError(
            f"--shard-dir {directory} is inside the warehouse folder {db}; put worker shards "
            "elsewhere (the default is next to it: <db>.worker-shards/)"
        )


def run_id_for(config: dict, run_id: str | None) -> tuple[str, str]:
    """(run id, config hash) exactly as ShardWriter computes them, before any shard is opened."""
    config_hash = lineage.config_hash(json.loads(lineage.canonical_json(config)))
    return run_id or default_run_id(config_hash), config_hash


def check_siblings(
    directory: Path, run_id: str, config_hash: str, count: int, expected: Callable[[int], list[str]]
) -> None:
    """Finished shards of this run in `directory` must come from the same slicing (count, batch size)."""
    if not directory.is_dir():
        return
    for shard in find_shards(directory)[0]:
        m = shard.manifest
        if m["run_id"] != run_id:
            continue
        if m["config_hash"] != config_hash:
            raise ValueError(
                f"{shard.label} belongs to run {run_id} with another config; use another --shard-dir"
            )
        if m["shard_count"] != count:
            raise ValueError(
                f"{directory} holds run {run_id} in {m['shard_count']} shards, not {count}; "
                "use the same N or another --shard-dir"
            )
        ids = [p for part in m["parts"] for p in part["problem_ids"]]
        if sorted(ids) != sorted(expected(m["shard_index"])):
            raise ValueError(
                f"{shard.label} holds other problems than this worker would give it; every worker "
                "of a run needs the same flags (--batch-size included)"
            )


class _ShardSink:
    """ChunkWriter's store interface over a ShardWriter, so shards get the same background writer."""

    def __init__(self, writer: ShardWriter):
        self.writer = writer

    def append_problems(self, _run_id, problems, results, attention, readouts=None):
        self.writer.append_problems(problems, results, attention, readouts=readouts)


def run_shard(
    req: RunConfig,
    index: int,
    count: int,
    *,
    db: str | Path | None = None,
    shard_dir: str | Path | None = None,
    run_id: str | None = None,
    model=None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> dict:
    """Compute shard `index` of `count` and publish it; a finished shard is skipped. Returns a summary.

    The shard goes to `shard_dir`, else `<db>.worker-shards/<run id>/`. `model`: an already loaded
    model (a Ray worker keeps one between tasks). `on_chunk(n)` is called after each computed chunk of
    n problems.
    """
    if req.resume:
        raise ValueError(
            "--resume does not apply to shards: run the same --shard I/N again, finished shards are skipped"
        )
    if shard_dir is None and db is None:
        raise ValueError("run_shard needs a shard directory or the warehouse path")
    if shard_dir is not None:
        check_shard_dir(Path(shard_dir), db)  # before the model loads
    direct = shard_dir is None and lake.takes_concurrent_writers(db)
    started = time.time()
    plan = plan_run(req, model)
    run_id, config_hash = run_id_for(plan.config, run_id)
    if direct:
        return _commit_shard(plan, req.batch_size, index, count, db, run_id, progress, on_chunk, started)
    directory = Path(shard_dir) if shard_dir is not None else default_shard_dir(db, run_id)
    final = directory / shard_name(index, count)
    mine = shard_batches(plan.problems, req.batch_size, index, count)

    def expected(i: int) -> list[str]:
        return [
            p.problem_id for batch in shard_batches(plan.problems, req.batch_size, i, count) for p in batch
        ]

    summary = {
        "run_id": run_id,
        "shard": f"{index}/{count}",
        "path": str(final),
        "shard_dir": str(directory),
        "problems": sum(len(b) for b in mine),
        "problems_planned": len(plan.problems),
        "conditions": len(plan.conditions),
    }
    check_siblings(directory, run_id, config_hash, count, expected)
    if (final / MANIFEST).is_file():  # finished before: this run's (vetted above) or another's
        if read_manifest(final)["run_id"] != run_id:
            raise ValueError(
                f"{final} already holds a shard of run {read_manifest(final)['run_id']}; "
                "use another --shard-dir"
            )
        return {**summary, "status": "skipped", "seconds": round(time.time() - started, 2)}

    fields = {**plan.fields, "config": plan.config, "run_id": run_id}
    with ShardWriter(directory, fields, index=index, count=count) as writer:
        _compute(
            plan,
            mine,
            _ShardSink(writer),
            f"shard {index}/{count} of {run_id}",
            run_id,
            0,
            progress,
            on_chunk,
        )
    return {**summary, "status": "written", "seconds": round(time.time() - started, 2)}


def _compute(
    plan,
    batches: list[list],
    sink,
    label: str,
    run_id: str,
    done: int,
    progress: bool,
    on_chunk: Callable[[int], None] | None,
) -> None:
    """Run `batches` and hand each batch's rows to `sink` through a background ChunkWriter (both shard
    paths: a portable shard, or commits into the warehouse). `done`: problems of the shard already in."""
    pool = donor_sites(plan.model, plan.problems, plan.opts, plan.methods)  # whole problem set, as one run
    bar = tqdm(
        total=done + sum(len(b) for b in batches),
        initial=done,
        desc=label,
        unit="problem",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    chunks = ChunkWriter(sink, run_id)
    try:
        for batch in batches:
            out = run_chunk(plan.model, batch, plan.opts, pool)
            chunks.put(problems_frame(batch), out.results, out.attention, out.readouts)
            bar.update(len(batch))
            if on_chunk is not None:
                on_chunk(len(batch))
    finally:
        bar.close()
        chunks.close()


class _WarehouseSink:
    """ChunkWriter's store interface for a shard worker committing into the warehouse itself: every
    problem goes in with its position in the run's problem order as ordinal."""

    def __init__(self, store, positions: dict[str, int]):
        self.store, self.positions = store, positions

    def append_problems(self, run_id, problems, results, attention, readouts=None):
        ordinals = [self.positions[p] for p in problems.column("problem_id").to_pylist()]
        self.store.append_problems(run_id, problems, results, attention, ordinals=ordinals, readouts=readouts)


class ShardStopped(ValueError):
    """A shard worker committing into the warehouse stopped; the run stays running with what it committed."""


def _commit_shard(
    plan,
    batch_size: int,
    index: int,
    count: int,
    db,
    run_id: str,
    progress: bool,
    on_chunk: Callable[[int], None] | None,
    started: float,
) -> dict:
    """Shard `index` of `count` committed straight into a warehouse with a PostgreSQL catalog."""
    from warehouse.store import open_warehouse

    store = open_warehouse(db)
    run_id, committed, status = store.join_run(plan.config, (index, count), run_id=run_id, **plan.fields)
    mine = shard_batches(plan.problems, batch_size, index, count)
    todo = []
    for batch in mine:
        done = sum(p.problem_id in committed for p in batch)
        if done == len(batch):
            continue
        if done:
            store.leave_run(run_id)
            raise ValueError(
                f"shard {index}/{count}: run {run_id} holds some problems of this worker's batch "
                "but not all; every worker of a run needs the same --shard N and --batch-size"
            )
        todo.append(batch)
    summary = {
        "run_id": run_id,
        "shard": f"{index}/{count}",
        "path": str(db),
        "shard_dir": None,
        "problems": sum(len(b) for b in mine),
        "problems_planned": len(plan.problems),
        "conditions": len(plan.conditions),
    }
    if status == "complete" or not todo:
        outcome = (
            {
                "status": "complete",
                "problems_committed": len(committed),
                "problems_planned": len(plan.problems),
            }
            if status == "complete"
            else store.finish_shard(run_id)
        )
        return {
            **summary,
            "status": "skipped",
            "run_status": outcome["status"],
            "problems_committed": outcome["problems_committed"],
            "seconds": round(time.time() - started, 2),
        }

    positions = {p.problem_id: i for i, p in enumerate(plan.problems)}
    try:
        _compute(
            plan,
            todo,
            _WarehouseSink(store, positions),
            f"shard {index}/{count} of {run_id}",
            run_id,
            summary["problems"] - sum(len(b) for b in todo),
            progress,
            on_chunk,
        )
    except BaseException as exc:
        store.leave_run(run_id)
        if isinstance(exc, (OSError, ValueError)):
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ShardStopped(
                f"shard {index}/{count} of run {run_id} stopped: {reason}; its committed batches "
                "are kept and the run stays running: fix the cause, then run the same shard "
                "again"
            ) from exc
        raise
    outcome = store.finish_shard(run_id)
    return {
        **summary,
        "status": "committed",
        "run_status": outcome["status"],
        "problems_committed": outcome["problems_committed"],
        "seconds": round(time.time() - started, 2),
    }
