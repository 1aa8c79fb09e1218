"""The warehouse API the engine, ingest and CLI call: runs, problem commits, resume, delete.

Reads during writes (SPEC 6): fact rows go to Parquet shards, one directory per committed batch,
published by a rename (warehouse/shards.py); the DuckDB file holds runs, problems, positions and
the views over the shards. So a running run never holds the DuckDB lock while it appends; it takes
the lock only for a few milliseconds to begin, finish or delete a run, and readers retry around
those moments. Every reader sees every batch committed before its query started. finish_run
compacts a run's batches into one file per table so queries do not slow down with file counts.
See warehouse/README.md for the alternatives weighed.

One writer per run at a time, enforced: the process that begins or resumes a run holds an exclusive
lock on `<shards>/_locks/<run_id>.lock` (flock, so the kernel drops it when the process dies, even by
SIGKILL) until it finishes the run; another process that tries to resume, append to, finish or delete
it is refused with RunBusy. A Warehouse object caches its runs' commit state.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import connect, lineage, migrate, views
from warehouse.errors import RunBusy, RunClosed, UnknownRun, WarehouseError
from warehouse.frames import conform, distinct
from warehouse.schema import CONVENTIONS, SHARD_TABLES, column_names
from warehouse.shards import Shards

_AUTO = ("run_id", "status", "started_at", "finished_at", "config_json", "config_hash", "error")
LINEAGE_FIELDS = tuple(c for c in column_names("runs") if c not in _AUTO[1:])
_RUN_ID = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]{0,99}")  # also a directory name under the shards
_WRITER_LOCKS: dict[str, int] = {}  # lock file -> descriptor, for the runs this process writes


def _hold_writer_lock(path: Path, run_id: str) -> bool:
    """Take the run's writer lock for this process, or raise RunBusy; False if this process held it already."""
    key = str(path)
    if key in _WRITER_LOCKS:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        pid = f" (pid {holder})" if holder else ""
        raise RunBusy(f"run {run_id} is being written by another process{pid}; wait for it to end (or stop it), "
                      "then resume the run") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _WRITER_LOCKS[key] = fd
    return True


def _release_writer_lock(path: Path, unlink: bool = False) -> None:
    fd = _WRITER_LOCKS.pop(str(path), None)
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if fd is not None:
        os.close(fd)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class _RunState:
    committed: set[str] = field(default_factory=set)
    next_ordinal: int = 0


class Warehouse:
    """One warehouse: a DuckDB file and its shard directory. Holds no connection between calls."""

    def __init__(self, path: str | os.PathLike, durable: bool = True):
        self.path = Path(path).resolve()
        self.shards = Shards(self.path, durable=durable)
        self._runs: dict[str, _RunState] = {}

    # --- opening --------------------------------------------------------------------------------
    def initialize(self, queries_dir: str | os.PathLike = views.QUERIES_DIR) -> None:
        """Create or migrate the file, pin the fact views here, apply queries/*.sql, tidy shards."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shards.ensure_layout()
        with connect.transaction(self.path) as con:
            migrate.migrate(con)
            self.shards.recover()
        try:
            self._define_views(queries_dir)
        except duckdb.Error:  # a batch torn by a power loss breaks every scan: drop such batches, retry
            dropped = [self.shards.drop_torn_batches(run_id) for run_id in self.shards.run_ids()]  # all runs
            if not any(dropped):
                raise
            self._define_views(queries_dir)
        self.shards.empty_trash()

    def _define_views(self, queries_dir) -> None:
        with connect.transaction(self.path) as con:
            migrate.define_fact_views(con, self.shards)
            views.apply_views(con, queries_dir)

    @contextlib.contextmanager
    def reader(self, timeout: float | None = None):
        """A read-only connection whose fact views point at this file's shards (even if it moved)."""
        con = connect.connect(self.path, read_only=True, timeout=timeout)
        try:
            migrate.pin_fact_views(con, self.shards)
            yield con
        finally:
            con.close()

    def schema_version(self) -> int:
        """The file's schema version (0: not a warehouse yet), read without pinning any view."""
        con = connect.connect(self.path, read_only=True)
        try:
            return migrate.current_version(con)
        finally:
            con.close()

    # --- runs -----------------------------------------------------------------------------------
    def begin_run(self, config: dict, **fields) -> str:
        """Record a new run (status running) with its config, hash and lineage; returns its id.

        Lineage fields are the `runs` columns (model_name, weights_sha256, seed, ...); a field not
        given is taken from the config entry of the same name, when there is one.
        """
        unknown = sorted(set(fields) - set(LINEAGE_FIELDS))
        if unknown:
            raise TypeError(f"begin_run: unknown field(s) {', '.join(unknown)}")
        row = {name: config.get(name) for name in LINEAGE_FIELDS if name in config}
        row.update(fields)
        row.setdefault("convention", "codi")
        if row["convention"] not in CONVENTIONS:
            raise WarehouseError(f"convention must be one of {', '.join(CONVENTIONS)}")
        row.setdefault("code_version", lineage.code_version())
        row.setdefault("library_versions", lineage.library_versions())
        row["library_versions"] = json.dumps(row["library_versions"], sort_keys=True)
        run_id = row.pop("run_id", None) or lineage.new_run_id()
        if not _RUN_ID.fullmatch(run_id):
            raise WarehouseError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-', not first '_' or '.'")
        row.update(run_id=run_id, status="running", started_at=_now(),
                   config_json=lineage.canonical_json(config), config_hash=lineage.config_hash(config))
        names = list(row)
        with self._claiming(run_id):
            self.shards.run_dir(run_id).mkdir(parents=True, exist_ok=True)
            with connect.transaction(self.path) as con:
                if con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0]:
                    raise WarehouseError(f"run {run_id} already exists")
                con.execute(f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                            [row[n] for n in names])
        self._runs[run_id] = _RunState()
        return run_id

    def resume_run(self, spec: str) -> set[str]:
        """Reopen a running or failed run for appending; returns the problems already committed."""
        run_id = self.resolve_run(spec)
        # First of all: is another process writing this run?
        with self._claiming(run_id), connect.transaction(self.path) as con:
            status = self._status(con, run_id)
            if status == "complete":
                raise RunClosed(f"run {run_id} is complete; complete runs are immutable")
            con.execute("UPDATE runs SET status = 'running', finished_at = NULL, error = NULL WHERE run_id = ?",
                        [run_id])
            self.shards.recover()
        self.shards.clear_staging(run_id)
        self.shards.run_dir(run_id).mkdir(exist_ok=True)
        self.shards.drop_torn_batches(run_id)
        self.shards.empty_trash()
        self._runs.pop(run_id, None)
        return self.committed_problems(run_id)

    def committed_problems(self, run_id: str) -> set[str]:
        """Problems whose rows are committed for this run (what resume skips)."""
        return set(self.shards.read_run(run_id, "run_problems", ["problem_id"]).column(0).to_pylist())

    def finish_run(self, run_id: str, status: str = "complete", error: str | None = None) -> None:
        """End a run: compact its shards, move its problems into problems_base, set the status."""
        if status not in ("complete", "failed"):
            raise WarehouseError("a run finishes as complete or failed")
        with self.reader() as con:
            if self._status(con, run_id) != "running":
                raise RunClosed(f"run {run_id} is not running")
        self._claim(run_id)
        try:
            staged = self.shards.compact(run_id)
        except OSError:
            if status == "complete":
                raise
            # A failed run (the disk may be full) keeps its committed batches as they are: resume
            # reads them, and the next finish compacts.
            self.shards.clear_staging(run_id)
            staged = None
        with connect.locked(self.path) as con:
            con.begin()
            self._keep_problems(con, run_id)
            updated = con.execute("UPDATE runs SET status = ?, finished_at = ?, error = ? "
                                  "WHERE run_id = ? AND status = 'running'",
                                  [status, _now(), error, run_id]).fetchall()[0][0]
            if updated != 1:
                con.rollback()
                raise RunClosed(f"run {run_id} was closed or deleted by another process")
            con.commit()
            if staged is not None:
                self.shards.swap_in(run_id, staged)  # still under the lock: readers never see both
        self.shards.clear_staging(run_id)
        self.shards.empty_trash()
        self._runs.pop(run_id, None)
        _release_writer_lock(self._lock_path(run_id))

    def delete_run(self, spec: str) -> dict:
        """Remove a run and every row of it. Its problems stay (in problems_base): runs share them."""
        run_id = self.resolve_run(spec)
        self._claim(run_id)  # never delete a run another process is writing
        removed = {"run_id": run_id, **self.row_counts(run_id)}
        with connect.transaction(self.path) as con:
            self._keep_problems(con, run_id)
            con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
            self.shards.discard(run_id)
        self.shards.empty_trash()
        self._runs.pop(run_id, None)
        _release_writer_lock(self._lock_path(run_id), unlink=True)
        return removed

    def _lock_path(self, run_id: str) -> Path:
        return self.shards.root / "_locks" / f"{run_id}.lock"

    def _claim(self, run_id: str) -> None:
        """This process becomes the run's only writer until it finishes the run (RunBusy if taken)."""
        _hold_writer_lock(self._lock_path(run_id), run_id)

    @contextlib.contextmanager
    def _claiming(self, run_id: str):
        """Claim the run for the block; should the block fail, let go of a claim taken here."""
        taken = _hold_writer_lock(self._lock_path(run_id), run_id)
        try:
            yield
        except BaseException:
            if taken:
                _release_writer_lock(self._lock_path(run_id))
            raise

    def resolve_run(self, spec: str) -> str:
        """A full run id, a unique prefix of one, or `latest` (the most recently started run)."""
        with self.reader() as con:
            if spec == "latest":
                found = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1").fetchall()
                if not found:
                    raise UnknownRun("there are no runs yet; start one with `python cli.py run`")
                return found[0][0]
            found = [r[0] for r in con.execute(
                "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id", [spec]).fetchall()]
        if spec in found:
            return spec
        if len(found) == 1:
            return found[0]
        if not found:
            raise UnknownRun(f"no run matches {spec!r}; `python cli.py runs` lists them")
        raise UnknownRun(f"{spec!r} is ambiguous: {len(found)} runs match ({', '.join(found[:4])}, ...); "
                         "give more of the run id")

    def list_runs(self) -> list[dict]:
        with self.reader() as con:
            rel = con.sql(
                "SELECT r.run_id, r.status, r.started_at, r.finished_at, r.model_name, r.dataset_name, "
                "r.n_problems_planned, coalesce(c.n, 0) AS problems_committed, r.convention "
                "FROM runs r LEFT JOIN (SELECT run_id, count(*) AS n FROM run_problems GROUP BY run_id) c "
                "USING (run_id) ORDER BY r.started_at, r.run_id")
            return rel.pl().to_dicts()

    def show_run(self, spec: str) -> dict:
        run_id = self.resolve_run(spec)
        with self.reader() as con:
            run = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id]).pl().to_dicts()[0]
        for key in ("config_json", "library_versions"):
            run[key] = json.loads(run[key]) if run[key] else None
        return {**run, "rows": self.row_counts(run_id)}

    def row_counts(self, run_id: str) -> dict[str, int]:
        """Committed rows per shard table, from Parquet footers (instant, no scan)."""
        return {t: sum(pq.ParquetFile(f).metadata.num_rows for f in self.shards.run_files(run_id, t))
                for t in SHARD_TABLES}

    def _keep_problems(self, con, run_id: str) -> None:
        """Move the problems a run brought (still in its shards) into problems_base."""
        if self.shards.run_files(run_id, "problems"):
            con.execute("INSERT INTO problems_base BY NAME SELECT * FROM read_parquet(?, union_by_name = true) "
                        "QUALIFY row_number() OVER (PARTITION BY problem_id) = 1 ON CONFLICT DO NOTHING",
                        [f"{self.shards.run_dir(run_id)}/*/problems.parquet"])

    @staticmethod
    def _status(con, run_id: str) -> str:
        found = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if not found:
            raise UnknownRun(f"no run {run_id!r}")
        return found[0][0]

    # --- appending ------------------------------------------------------------------------------
    def append_problem(self, run_id: str, problem, results, attention=None) -> None:
        """Commit one problem's rows (its problem row, results and attention) atomically."""
        problem_table = conform(problem, "problems", run_id)
        if problem_table.num_rows != 1:
            raise WarehouseError(f"append_problem takes one problem row, got {problem_table.num_rows}")
        problem_id = problem_table.column("problem_id")[0].as_py()
        self._commit(run_id, [problem_id], {
            "problems": problem_table,
            "results": conform(results, "results", run_id, problem_id),
            "attention": conform(attention, "attention", run_id, problem_id),
        })

    def append_problems(self, run_id: str, problems, results, attention=None) -> None:
        """Commit several problems' rows in one batch (one transaction); frames carry problem_id."""
        problem_table = conform(problems, "problems", run_id)
        ids = problem_table.column("problem_id").to_pylist()
        if len(set(ids)) != len(ids):
            raise WarehouseError("append_problems: a problem appears twice in the batch")
        tables = {"problems": problem_table,
                  "results": conform(results, "results", run_id),
                  "attention": conform(attention, "attention", run_id)}
        for name in ("results", "attention"):
            stray = distinct(tables[name].column("problem_id")) - set(ids)
            if stray:
                raise WarehouseError(f"{name} rows for problems not in the batch: {sorted(stray)[:3]}")
        self._commit(run_id, ids, tables)

    def _state(self, run_id: str) -> _RunState:
        state = self._runs.get(run_id)
        if state is None:
            with self.reader() as con:
                status = self._status(con, run_id)
            if status != "running":
                raise RunClosed(f"run {run_id} is {status}; "
                                + ("complete runs are immutable" if status == "complete" else "resume it first"))
            self._claim(run_id)
            done = self.shards.read_run(run_id, "run_problems", ["problem_id", "ordinal"])
            ordinals = done.column("ordinal").to_pylist()
            state = _RunState(set(done.column("problem_id").to_pylist()), max(ordinals, default=-1) + 1)
            self._runs[run_id] = state
        return state

    def _commit(self, run_id: str, problem_ids: list[str], tables: dict[str, pa.Table]) -> None:
        state = self._state(run_id)
        again = [p for p in problem_ids if p in state.committed]
        if again:
            raise WarehouseError(f"problem {again[0]} is already committed for run {run_id}")
        first = state.next_ordinal
        tables["run_problems"] = conform(pa.table({
            "problem_id": problem_ids,
            "ordinal": pa.array(range(first, first + len(problem_ids)), pa.int32()),
            "committed_at": pa.array([_now()] * len(problem_ids), pa.timestamp("us")),
        }), "run_problems", run_id)
        self.shards.write_batch(run_id, first, tables)
        state.committed.update(problem_ids)
        state.next_ordinal = first + len(problem_ids)

    # --- problems -------------------------------------------------------------------------------
    def upsert_problems(self, problems) -> int:
        """Add problems to problems_base; ids already there are kept as they are. Returns rows added."""
        incoming = conform(problems, "problems", run_id="")
        with connect.transaction(self.path) as con:
            before = con.execute("SELECT count(*) FROM problems_base").fetchall()[0][0]
            con.register("incoming", incoming)
            con.execute("INSERT INTO problems_base BY NAME SELECT * FROM incoming "
                        "QUALIFY row_number() OVER (PARTITION BY problem_id) = 1 ON CONFLICT DO NOTHING")
            return con.execute("SELECT count(*) FROM problems_base").fetchall()[0][0] - before


def open_warehouse(path: str | os.PathLike, read_only: bool = False, durable: bool = True) -> Warehouse:
    """The warehouse at `path`; created (and migrated, views applied) unless read_only.

    durable=False skips the fsync of each committed batch (about 10% faster; safe against killed
    processes, not against power loss).
    """
    store = Warehouse(path, durable=durable)
    if read_only:
        if not store.path.exists():
            raise FileNotFoundError(f"no warehouse at {store.path} (the first run or ingest creates it)")
        version = store.schema_version()
        if version == 0:
            raise WarehouseError(f"{store.path} is a DuckDB file but not a codi warehouse")
        if version > migrate.schema.SCHEMA_VERSION:  # its views and columns may mean something else
            raise migrate.SchemaError(migrate.newer_message(store.path, version))
        if version < migrate.schema.SCHEMA_VERSION:
            store.initialize()  # an older file: migrate it forward once, briefly taking the write lock
    else:
        store.initialize()
    return store


def _store(path_or_store) -> Warehouse:
    return path_or_store if isinstance(path_or_store, Warehouse) else open_warehouse(path_or_store)


def begin_run(path_or_store, config: dict, **fields) -> str:
    return _store(path_or_store).begin_run(config, **fields)


def resume_run(path_or_store, spec: str) -> set[str]:
    return _store(path_or_store).resume_run(spec)


def finish_run(path_or_store, run_id: str, status: str = "complete", error: str | None = None) -> None:
    _store(path_or_store).finish_run(run_id, status, error)


def committed_problems(path_or_store, run_id: str) -> set[str]:
    return _store(path_or_store).committed_problems(run_id)


def delete_run(path_or_store, spec: str) -> dict:
    return _store(path_or_store).delete_run(spec)


def list_runs(path_or_store) -> list[dict]:
    return _store(path_or_store).list_runs()


def resolve_run(path_or_store, spec: str) -> str:
    return _store(path_or_store).resolve_run(spec)


__all__ = [
    "Warehouse",
    "begin_run",
    "committed_problems",
    "delete_run",
    "finish_run",
    "list_runs",
    "open_warehouse",
    "resolve_run",
    "resume_run",
]
