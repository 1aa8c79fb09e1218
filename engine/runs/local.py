"""`python cli.py run` in one process: every condition of every problem, streamed into the warehouse.

The model works on chunk n+1 while a writer thread commits chunk n (DuckDB and Parquet writing
release the GIL), so the warehouse never stalls the model. A chunk's problems commit together, so
an interrupted run resumes (`--resume RUN`) with no duplicates and no gaps.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator

import torch
from tqdm import tqdm

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import select_donor_pool
from engine.interventions.methods import pool_methods
from engine.interventions.options import EngineOptions
from engine.model.codi import CodiModel
from engine.runs.config import RunConfig
from engine.runs.memory import (
    MemoryEstimate,
    current_rss,
    estimate_run_memory,
    fit_batch_size,
    parse_size,
    peak_rss,
    reset_peak_rss,
)
from engine.runs.plan import RunPlan, plan_run
from engine.runs.resume import check_resumable, resumed_config
from ingest.problems import problems_table as problems_frame  # the `problems` rows ingest writes
from warehouse.lake import WarehouseBusy


class ChunkWriter:
    """Commits chunks on a background thread; errors surface on the next put or on close."""

    def __init__(self, store, run_id: str):
        self.store, self.run_id = store, run_id
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    problems, results, attention, readouts = item
                    self.store.append_problems(self.run_id, problems, results, attention, readouts=readouts)
                except BaseException as exc:  # noqa: BLE001 - surfaced to the caller on the next put/close
                    self.error = exc

    def put(self, problems, results, attention, readouts=None):
        self._raise()
        self.queue.put((problems, results, attention, readouts or {}))

    def close(self):
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def _raise(self):
        if self.error is not None:
            raise self.error


def execute_run(req: RunConfig, db: str, progress: bool = True) -> dict:
    """Run (or resume) an experiment into the warehouse at `db`; returns a summary.

    SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) interrupt it: the chunk in flight is dropped, the
    chunks already computed are committed, the run is marked `interrupted` and `RunInterrupted` says
    how many problems are kept and how to resume.
    """
    from warehouse.store import open_warehouse

    say = _say if progress else _quiet
    # a bad --max-memory is refused before the model loads
    limit = None if req.max_memory is None else parse_size(req.max_memory)
    with sigterm_interrupts():
        if req.resume:  # the run's stored config, before the model loads: `--resume RUN` alone is enough
            req = resumed_config(req, db)
        say(f"loading model {req.model}" + (f" from {req.checkpoint}" if req.checkpoint else "") + " ...")
        plan = plan_run(req)
        memory, batch_size = chunk_memory(plan, req, limit)
        within = f", within --max-memory {req.max_memory}" if limit else ""
        say(f"running {memory.line()}{within} ...")  # a step, like the others (ends in "...")
        model, problems, methods, conditions, opts, config = (
            plan.model,
            plan.problems,
            plan.methods,
            plan.conditions,
            plan.opts,
            plan.config,
        )
        store = open_warehouse(db)
        if req.resume:
            run_id = store.resolve_run(req.resume)
            shown = store.show_run(run_id)
            check_resumable(run_id, shown.get("config_json"), shown.get("config_hash"), config)
            done = store.resume_run(run_id)
            if req.name is not None or req.tags or req.note is not None:  # labels given beside --resume
                store.annotate_run(
                    run_id,
                    **{k: getattr(req, k) for k in ("name", "note") if getattr(req, k) is not None},
                    tags=req.tags,
                )
        else:
            run_id = store.begin_run(config, **plan.fields)
            done = set()
        todo = [p for p in problems if p.problem_id not in done]
        started = time.time()
        nonfinite = broken = 0
        writer: ChunkWriter | None = None
        try:
            if pool_methods(methods):
                say(f"computing the donor pool's clean values ({', '.join(pool_methods(methods))}) ...")
            pool = donor_sites(model, problems, opts, methods)
            writer = ChunkWriter(store, run_id)
            bar = tqdm(
                total=len(problems),
                initial=len(problems) - len(todo),
                desc=f"run {run_id}",
                unit="problem",
                file=sys.stderr,
                disable=not progress,
                dynamic_ncols=True,
            )
            # the chunks' own peak: the donor pool and the model load before them are not theirs
            peak_before, rss_before = peak_rss(), current_rss()
            peak_reset = reset_peak_rss()
            try:
                for i in range(0, len(todo), batch_size):
                    chunk = todo[i : i + batch_size]
                    out = run_chunk(model, chunk, opts, pool)
                    nonfinite += nonfinite_rows(out.results)
                    broken += nonfinite_rows(out.results.filter(out.results["method"] == "baseline"))
                    writer.put(problems_frame(chunk), out.results, out.attention, out.readouts)
                    del out  # the writer holds what it needs; the next chunk runs without this one
                    bar.update(len(chunk))
            finally:
                bar.close()
                writer.close()
        except KeyboardInterrupt as exc:
            raise _interrupted(store, run_id, len(problems), writer, signal_name(exc)) from exc
        except BaseException as exc:
            # If even that fails (a full disk), the run stays `running`, which resume accepts too. A
            # catalog that stayed locked would only keep us waiting again: leave the run running, say so.
            if not isinstance(exc, WarehouseBusy):
                with contextlib.suppress(Exception):
                    store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            if isinstance(exc, (OSError, ValueError)):  # a cause the user can fix: say how to go on
                raise RunFailed(run_id, exc) from exc
            raise
        store.finish_run(run_id, "complete")
    if broken:
        print(
            f"note: the baseline itself has non-finite logits on {broken} problem(s): the model "
            "(checkpoint or dtype) is broken there, not a corruption; every measure of those problems "
            "is NULL",
            file=sys.stderr,
        )
    if nonfinite - broken > 0:
        print(
            f"note: {nonfinite - broken} condition row(s) had non-finite logits (the corruption overflowed "
            "the model); their KL, JS, entropy, log p(gold) and disruption are NULL and they count as "
            "failures",
            file=sys.stderr,
        )
    return {
        "run_id": run_id,
        "status": "complete",
        "problems": len(problems),
        "problems_kept": len(problems) - len(todo),  # committed before (a resumed run); not run again
        "conditions": len(conditions),
        "seconds": round(time.time() - started, 2),
        "nonfinite_rows": nonfinite,
        "memory": {
            **memory.to_dict(),
            "max_memory_bytes": limit,
            # measured: this process's resident memory before the first chunk, and its peak over the chunks
            "rss_before_chunks_bytes": rss_before,
            "process_peak_rss_bytes": peak_rss(),  # over the chunks (since the reset), where Linux allows
            "peak_reset": peak_reset,
            "peak_rss_before_chunks_bytes": peak_before,
        },
    }


def chunk_memory(plan: RunPlan, req: RunConfig, limit: int | None) -> tuple[MemoryEstimate, int]:
    """The estimate of a chunk's memory and the batch size: `req.batch_size`, or with `limit` (bytes) the
    largest that fits it (a ValueError saying what would fit when even one problem does not)."""
    if limit is None:
        return estimate_run_memory(plan, req.batch_size), req.batch_size
    memory = fit_batch_size(plan, limit, str(req.max_memory))
    return memory, memory.n_problems


def _say(line: str) -> None:  # what the first seconds do; ends in "..." (a step, not a message)
    print(line, file=sys.stderr, flush=True)


def _quiet(line: str) -> None:
    pass


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run: its committed problems are kept and it is marked `interrupted`
    (or stays `running` when it could not be marked; resume takes either)."""

    def __init__(self, run_id: str | None, kept: int | None = None, planned: int | None = None):
        self.run_id, self.kept, self.planned = run_id, kept, planned
        super().__init__(self.line())

    def line(self, flags: str = "") -> str:
        """The one line to show; `flags` follow the resume command (` --db DIR` for another warehouse)."""
        if self.run_id is None:
            return "interrupted before the run began; nothing was written"
        kept = f"{self.kept} of {self.planned} problems" if self.kept is not None else "its problems are"
        return (
            f"interrupted: {kept} kept in run {self.run_id}; resume with: "
            f"python cli.py run --resume {self.run_id}{flags}"
        )


def _interrupted(store, run_id: str, planned: int, writer: ChunkWriter | None, name: str) -> RunInterrupted:
    """End an interrupted run: let the writer commit the chunks it was given (a chunk half committed
    would hold the run's lock), mark the run interrupted, count what is kept."""
    with contextlib.suppress(BaseException):  # a second Ctrl-C here stops the wait, not the marking
        if writer is not None and writer.thread.is_alive():
            writer.queue.put(None)  # the thread drains the queue: there is room, and it ends on None
            writer.thread.join()
    kept = None
    with contextlib.suppress(Exception):
        store.finish_run(run_id, "interrupted", error=f"interrupted by {name}")
    with contextlib.suppress(Exception):
        kept = len(store.committed_problems(run_id))
    return RunInterrupted(run_id, kept, planned)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as an interrupt (what a cluster scheduler sends to stop a job)."""


def signal_name(exc: BaseException) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


def _on_sigterm(signum, frame):
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM interrupts like Ctrl-C; the previous handler is restored after.
    Only the main thread can install handlers: elsewhere SIGTERM keeps its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunFailed(ValueError):
    """A run stopped by a cause outside the engine (full disk, bad input, a catalog locked too long);
    committed problems are kept."""

    def __init__(self, run_id: str, cause: BaseException):
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        state = "it stays running, " if isinstance(cause, WarehouseBusy) else ""
        super().__init__(
            f"run {run_id} stopped: {reason}; committed problems are kept ({state}nothing is lost): "
            f"fix the cause, then continue with `python cli.py run --resume {run_id}`"
        )
        self.run_id = run_id


def nonfinite_rows(results) -> int:
    """Rows whose EOT distribution was not finite (entropy NULL): a corruption that overflowed."""
    return int(results.get_column("entropy_first").is_null().sum())


def donor_sites(model: CodiModel, problems: list, opts: EngineOptions, methods) -> dict[str, torch.Tensor]:
    """Clean site values of the seeded donor pool (only when a method that uses it, random or mean, is
    asked for)."""
    if not pool_methods(methods):
        return {}
    ids = set(select_donor_pool(problems, opts.seed))
    pool_problems = [p for p in problems if p.problem_id in ids]
    baseline_only = EngineOptions(
        opts.layers,
        opts.conditions[:1],
        opts.seed,
        "none",
        opts.noise_scale,
        opts.max_new_tokens,
        n_heads=opts.n_heads,
        extra_sites=opts.recorded,  # the other sites' values the conditions take (mean of a head, ...)
    )
    return run_chunk(model, pool_problems, baseline_only).sites
