"""The warehouse API the engine, ingest and CLI call: runs, problem commits, resume, delete.

A warehouse is a folder holding a DuckLake (warehouse/lake.py): every commit is an ACID snapshot, so
readers in other processes see whole batches of problems or nothing, a killed writer's commit is in
or out, and nothing but `delete_run` (and `vacuum`, which reclaims what deleted runs and expired
history left) ever removes rows. A commit appends the rows of one run's batch of problems to the fact
tables (results, attention, run_problems) and the problems it brings to problems_base. The store
enforces the keys DuckLake does not: a (run, problem) commits once, and a batch never repeats a
(problem, condition) result or an attention key.

One writer per run at a time, enforced: the process that begins or resumes a run holds an exclusive
lock on `<folder>/locks/<run_id>.lock` (flock, so the kernel drops it when the process dies, even by
SIGKILL) until it finishes the run; another process that tries to resume, append to, finish or delete
it is refused with RunBusy. Different runs commit concurrently; the catalog serializes commits and
the store retries a commit that meets a locked catalog or loses a conflict.

Shard workers (`run --shard I/N` with a PostgreSQL catalog) write one run together: each joins it
(`join_run`: the first creates it) holding the run lock *shared* and its own shard's lock
(`<run_id>.shard-I-of-N.lock`) exclusive, so workers of different shards commit concurrently while a
second worker of the same shard, a whole-run writer (`--resume`) and `runs delete` are refused. A
shard worker's problems carry their position in the run's problem order as ordinal, and
`finish_shard` completes the run when the last problem is committed (whichever worker that is).
Creating a run also rewrites warehouse_info's row, so two workers that create the same run at once
conflict in the catalog and the loser, retried, finds the run instead of adding a second row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeAlias, TypeVar

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import guard, labels, lake, lineage, migrate, schema, views
from warehouse.errors import RunBusy, RunClosed, RunDamaged, UnknownRun, WarehouseError
from warehouse.files import fsync_path
from warehouse.frames import conform, distinct, first_duplicate
from warehouse.handle import Run
from warehouse.schema import CONVENTIONS, column_names

_AUTO = ("run_id", "status", "started_at", "finished_at", "config_json", "config_hash", "error")
LINEAGE_FIELDS = tuple(c for c in column_names("runs") if c not in _AUTO[1:])  # with the labels
_UNSET: Any = object()
_RUN_ID = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]{0,99}")  # also a lock file name
RESERVED_RUN_IDS = ("latest",)
_WRITER_LOCKS: dict[str, int] = {}  # lock file -> descriptor, for the runs this process writes
_T = TypeVar("_T")
# rows as frames.to_arrow takes them (a missing attention frame is None)
_Rows: TypeAlias = "pa.Table | pa.RecordBatch | pl.DataFrame | dict[str, Any] | list[dict[str, Any]]"


def _hold_writer_lock(path: Path, run_id: str, shared: bool = False, busy: str | None = None) -> bool:
    """Take a writer lock for this process, or raise RunBusy; False if this process held it already.

    Exclusive: the run's only writer (its pid is written into the file for the message others get).
    Shared: one of the run's shard workers. `busy`: the RunBusy message instead of the whole-run one.
    """
    key = str(path)
    if key in _WRITER_LOCKS:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 40, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        who = f" ({holder})" if holder else ""
        if busy:
            raise RunBusy(busy.format(who=who)) from None
        stop = f"it: `kill {holder[4:]}`" if re.fullmatch(r"pid \d+", holder) else "it"
        raise RunBusy(
            f"run {run_id} is being written by another process{who}; wait for it to end (or stop "
            f"{stop}), then resume the run"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, ("its shard workers" if shared else f"pid {os.getpid()}").encode(), 0)
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
    shard: str | None = None  # "I/N" when this process writes the run as one of its shard workers
    shard_lock: Path | None = None  # then: the shard's lock file, held by this process


@dataclass(frozen=True)
class DamagedFile:
    run_id: str | None  # None: a file holding rows of several runs (never written by this program)
    table: str
    path: str
    problem: str

    def line(self) -> str:
        return f"{self.path} ({self.table}: {self.problem})"


class Warehouse:
    """One warehouse folder (see warehouse/lake.py). Holds one DuckDB connection with the lake attached."""

    def __init__(
        self,
        path: str | os.PathLike,
        durable: bool = True,
        read_only: bool = False,
        catalog: str | None = None,
    ):
        self.path = Path(path).absolute()
        self.durable = durable
        self.read_only = read_only
        self._catalog_spec = catalog
        self.catalog = lake.Catalog.parse(catalog)
        self.warehouse_id: str | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._mutex = threading.RLock()
        self._runs: dict[str, _RunState] = {}
        self._known_problems: set[str] = set()
        self._known_problems_loaded = False

    # --- opening --------------------------------------------------------------------------------
    def open(self, queries_dir: str | Path = views.QUERIES_DIR) -> Warehouse:
        """Check the folder's identity, attach its lake (creating it if new), migrate, apply views."""
        state = lake.inspect(self.path)
        if state == "new":
            if self.read_only:
                raise FileNotFoundError(f"no warehouse at {self.path} (the first run or ingest creates it)")
            self._create()
        else:
            identity = lake.read_identity(self.path)
            if self._catalog_spec is not None and lake.Catalog.parse(self._catalog_spec) != lake.catalog_of(
                identity
            ):
                raise WarehouseError(
                    f"{self.path} already has a {lake.catalog_of(identity).kind} catalog; "
                    "leave out --catalog when opening an existing warehouse"
                )
            self.catalog = lake.catalog_of(identity)
            self.warehouse_id = identity["warehouse_id"]
            if self.catalog.kind == "sqlite" and not (self.path / lake.CATALOG).is_file():
                raise lake.NotAWarehouse(
                    f"{self.path} has lost its catalog ({lake.CATALOG} is missing): its data "
                    "files cannot be read without it; restore the whole folder from a backup"
                )
        self._attach()
        self._check_identity()
        with self.cursor() as con:
            version = migrate.current_version(con)
        if version > schema.SCHEMA_VERSION:  # its views and columns may mean something else
            raise migrate.SchemaError(migrate.newer_message(self.path, version))
        digest = migrate.views_hash(queries_dir)
        if self.read_only:
            with self.cursor() as con:
                stale_views = migrate.stored_views_hash(con) != digest
            if version == schema.SCHEMA_VERSION and not stale_views:
                return self
            if self.catalog.kind == "sqlite" and not os.access(self.path, os.W_OK):
                if version < schema.SCHEMA_VERSION:
                    raise WarehouseError(
                        f"{self.path} has schema version {version}; this program reads "
                        f"{schema.SCHEMA_VERSION}, and upgrading it writes the folder, which this user "
                        "cannot: ask its owner to run any codi-warehouse command on it once, or copy the "
                        "folder somewhere writable"
                    )
                return self  # the views stored in it: those of the program that wrote it last
            # migrate it forward, or apply this program's views, once, with a writing connection; the
            # commit is a new snapshot, which this connection's next transaction reads
            Warehouse(self.path, durable=self.durable).open(queries_dir).close()
            return self
        with self.cursor() as con:
            stale = version < schema.SCHEMA_VERSION or migrate.stored_views_hash(con) != digest
        if stale:

            def upgrade(con: duckdb.DuckDBPyConnection) -> None:
                migrate.migrate(con, self.path)
                if migrate.stored_views_hash(con) != digest:
                    migrate.apply_all_views(con, queries_dir, digest)

            self._transact(upgrade, "applying the views")
        return self

    def _create(self) -> None:
        """Build the lake in a hidden sibling folder, then rename it into place (one atomic step)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        warehouse_id = lineage.new_warehouse_id()
        building = self.path.with_name(f".{self.path.name}.creating-{warehouse_id}")
        building.mkdir()
        try:
            for sub in (lake.DATA, lake.LOCKS):
                (building / sub).mkdir()
            if self.catalog.kind == "sqlite":
                lake.prepare_sqlite(building)
            con = lake.new_connection(self.catalog)
            try:
                lake.attach(con, building, self.catalog, read_only=False, create_data_path=True)
                con.execute("USE memory")
                con.execute(f"DETACH {lake.ALIAS}")
                lake.attach(con, building, self.catalog, read_only=False)
                if migrate.current_version(con):
                    raise WarehouseError(
                        f"the catalog {self.catalog.dsn!r} already holds a warehouse; give each "
                        "warehouse its own PostgreSQL database"
                    )
                migrate.create(con, warehouse_id, lake.ALIAS)
            finally:
                con.close()
            lake.write_identity(building, warehouse_id, self.catalog)
            try:
                os.rename(building, self.path)  # replaces an empty folder; refuses a non-empty one
            except OSError as exc:
                shutil.rmtree(building, ignore_errors=True)
                if lake.inspect(self.path) == "warehouse":  # another process created it first: use theirs
                    self.warehouse_id = lake.read_identity(self.path)["warehouse_id"]
                    self.catalog = lake.catalog_of(lake.read_identity(self.path))
                    return
                raise WarehouseError(
                    f"{self.path} appeared while the warehouse was being created ({exc.strerror}); try again"
                ) from None
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        fsync_path(self.path.parent)
        self.warehouse_id = warehouse_id

    def _attach(self) -> None:
        if not self.read_only and not os.access(self.path, os.W_OK):
            raise WarehouseError(
                f"{self.path} cannot be written by this user: read it (query, stats, runs, charts), or "
                "copy the folder somewhere writable to add or delete runs"
            )
        con = lake.new_connection(self.catalog)
        try:
            lake.retrying(
                lambda: lake.attach(con, self.path, self.catalog, self.read_only),
                lake.READ_TIMEOUT_S,
                f"opening {self.path}",
                self.path if self.catalog.kind == "sqlite" else None,
            )
        except duckdb.Error as exc:
            con.close()
            raise lake.NotAWarehouse(
                f"{self.path}: its catalog cannot be opened ({_first_line(exc)}); restore "
                "the folder from a backup"
            ) from None
        except BaseException:
            con.close()
            raise
        self._con = con

    def _check_identity(self) -> None:
        with self.cursor() as con:
            tables = {
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                ).fetchall()
            }
            found = (
                con.execute("SELECT warehouse_id FROM warehouse_info").fetchall()
                if "warehouse_info" in tables
                else []
            )
        if not found or found[0][0] != self.warehouse_id:
            raise lake.NotAWarehouse(
                f"{self.path}: its catalog belongs to another warehouse ({found[0][0] if found else 'none'}, "
                f"identity file says {self.warehouse_id}); keep a warehouse's files together, restore the "
                "folder from a backup"
            )

    def close(self) -> None:
        with self._mutex:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own on this warehouse's database (thread-safe), the lake in use."""
        if self._con is None:
            raise WarehouseError(f"warehouse {self.path} is closed")
        with self._mutex:
            con = self._con.cursor()
        try:
            con.execute(f"USE {lake.ALIAS}")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def reader(
        self, exclude_damaged: bool = False, require: tuple = ()
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for queries. Errors from unreadable data files name the file, its run and what to do.

        exclude_damaged: shadow the fact tables with temp views that leave out the runs that have an
        unreadable data file (the analysis views then read the other runs; file statistics let DuckLake
        skip the bad files unread). For `stats`, `compare` and `charts`, which name the runs they show in
        `require`: a damaged one of those raises RunDamaged (its result would be partial). Plain queries
        keep failing on a bad file, naming it.
        """
        with self.cursor() as con:
            if exclude_damaged or require:
                damaged = self.damaged_files()
                _refuse_damaged(damaged, require)
                bad = sorted(r for r in damaged if r is not None)
                if exclude_damaged and bad:
                    keep = " AND ".join("run_id <> " + lake.sql_str(r) for r in bad)
                    for table in schema.FACT_TABLES:
                        con.execute(
                            f"CREATE OR REPLACE TEMP VIEW {table} AS "
                            f"SELECT * FROM {lake.ALIAS}.main.{table} WHERE {keep}"
                        )
            try:
                yield con
            except duckdb.Error as exc:
                explained = self._explain(exc)
                if explained is not None:
                    raise explained from None
                raise

    def schema_version(self) -> int:
        with self.cursor() as con:
            return migrate.current_version(con)

    def _transact(
        self, body: Callable[[duckdb.DuckDBPyConnection], _T], what: str, timeout: float | None = None
    ) -> _T:
        """Run body(con) in one transaction, retried whole while other writers hold or win the catalog."""
        if self.read_only:
            raise WarehouseError(f"{what}: the warehouse was opened read-only")

        def attempt() -> _T:
            with self.cursor() as con:
                before = self._fact_files() if self.durable else None
                con.begin()
                try:
                    out = body(con)
                    if before is not None:
                        self._sync_new_files(before)
                    self._before_commit(what)
                    con.commit()
                except BaseException:
                    with contextlib.suppress(duckdb.Error):
                        con.rollback()
                    raise
                return out

        try:
            return lake.retrying(
                attempt,
                lake.WRITE_TIMEOUT_S if timeout is None else timeout,
                what,
                self.path if self.catalog.kind == "sqlite" else None,
            )
        except duckdb.Error as exc:
            if self._disk_full(exc):  # DuckDB and SQLite say it in their own words, not as an OSError
                raise OSError(
                    errno.ENOSPC,
                    f"{what}: No space left on device in {self.path} ({_printable(str(exc), 60)})",
                ) from exc
            raise

    def _disk_full(self, exc: BaseException) -> bool:
        text = str(exc)
        if "No space left on device" in text or "database or disk is full" in text:
            return True
        if "disk I/O error" in text:  # SQLite's generic error: a full disk if the folder's disk has no room
            with contextlib.suppress(OSError):
                found = os.statvfs(self.path)
                return found.f_bavail * found.f_frsize < 1 << 20
        return False

    def _before_commit(self, what: str) -> None:
        """Called inside every write transaction just before COMMIT (the fault tests stop a process here)."""

    def _fact_files(self) -> dict[str, set[str]]:
        out = {}
        for table in schema.FACT_TABLES:
            folder = self.path / lake.DATA / "main" / table
            out[table] = set(os.listdir(folder)) if folder.is_dir() else set()
        return out

    def _sync_new_files(self, before: dict[str, set[str]]) -> None:
        """fsync the Parquet files this transaction wrote (DuckDB does not) before the catalog commits
        them."""
        for table, names in before.items():
            folder = self.path / lake.DATA / "main" / table
            if not folder.is_dir():
                continue
            new = set(os.listdir(folder)) - names
            for name in new:
                fsync_path(folder / name)
            if new:
                fsync_path(folder)

    # --- runs -----------------------------------------------------------------------------------
    def begin_run(self, config: dict, **fields: Any) -> str:
        """Record a new run (status running) with its config, hash and lineage; returns its id.

        Lineage fields are the `runs` columns (model_name, weights_sha256, seed, ...); a field not
        given is taken from the config entry of the same name, when there is one.
        """
        row = self._run_row(config, fields)
        run_id = row["run_id"]

        def insert(con: duckdb.DuckDBPyConnection) -> None:
            if con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0]:
                raise WarehouseError(f"run {run_id} already exists")
            self._insert_run(con, row)

        with self._claiming(run_id):
            self._transact(insert, f"beginning run {run_id}")
        self._runs[run_id] = _RunState()
        return run_id

    def _run_row(self, config: dict, fields: dict) -> dict:
        """The runs row begin_run and join_run insert (status running)."""
        unknown = sorted(set(fields) - set(LINEAGE_FIELDS))
        if unknown:
            raise TypeError(f"begin_run: unknown field(s) {', '.join(unknown)}")
        row: dict[str, Any] = {
            name: config.get(name)
            for name in LINEAGE_FIELDS
            if name in config and name not in labels.LABEL_FIELDS  # labels are never config
        }
        row.update(fields)
        if row.get("name") is not None:
            row["name"] = labels.check_name(row["name"])
        if row.get("note") is not None:
            row["note"] = labels.check_note(row["note"])
        row["tags"] = labels.tags_json(row.get("tags"))
        row.setdefault("convention", "codi")
        if row["convention"] not in CONVENTIONS:
            raise WarehouseError(f"convention must be one of {', '.join(CONVENTIONS)}")
        row.setdefault("code_version", lineage.code_version())
        row.setdefault("library_versions", lineage.library_versions())
        row["library_versions"] = json.dumps(row["library_versions"], sort_keys=True)
        run_id = row.pop("run_id", None) or lineage.new_run_id()
        if not _RUN_ID.fullmatch(run_id):
            raise WarehouseError(
                f"run id {run_id!r}: use letters, digits, '.', '_' and '-', not first '_' or '.'"
            )
        if run_id in RESERVED_RUN_IDS:
            raise WarehouseError(
                f"run id {run_id!r} is reserved (it names the most recent run); choose another"
            )
        row.update(
            run_id=run_id,
            status="running",
            started_at=_now(),
            config_json=lineage.canonical_json(config),
            config_hash=lineage.config_hash(config),
        )
        return row

    @staticmethod
    def _insert_run(con: duckdb.DuckDBPyConnection, row: dict) -> None:
        # run_seq: the order runs began, for `latest` (a wall clock can step back); unique because of
        # the conflict below
        row = {
            **row,
            "run_seq": con.execute("SELECT coalesce(max(run_seq), 0) + 1 FROM runs").fetchall()[0][0],
        }
        names = list(row)
        con.execute(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [row[n] for n in names],
        )
        # Two processes inserting the same new run, or two runs with the same run_seq, would both
        # commit (inserts never conflict in DuckLake); rewriting this one-row table makes their
        # transactions conflict, and the retried loser sees the winner's run and number.
        con.execute("UPDATE warehouse_info SET views_hash = views_hash")

    def join_run(self, config: dict, shard: tuple[int, int], **fields: Any) -> tuple[str, set[str], str]:
        """Join run `fields["run_id"]` as the worker of shard (index, count); the first worker creates it.

        Returns (run id, problems committed so far by any worker, status): "complete" means there is
        nothing to do (the locks are let go at once); otherwise the run is running and this process may
        append the shard's problems (with `ordinals`) and must end with `finish_shard` or `leave_run`.
        Refused with RunBusy while another process writes the whole run or this shard, and with
        WarehouseError when the run exists with another configuration.
        """
        if not fields.get("run_id"):
            raise WarehouseError("join_run needs the run id every worker of the run computes")
        index, count = shard
        row = self._run_row(config, fields)
        run_id = row["run_id"]
        label = f"{index}/{count}"
        shard_lock = self._shard_lock_path(run_id, index, count)
        _hold_writer_lock(
            self._lock_path(run_id),
            run_id,
            shared=True,
            busy=(
                f"run {run_id} is being written by a single process{{who}} (run --resume, or a merge); "
                "wait for it to end, then run this shard again"
            ),
        )
        try:
            _hold_writer_lock(
                shard_lock,
                run_id,
                busy=(
                    f"shard {label} of run {run_id} is being written by another worker{{who}}; "
                    "each shard runs once at a time"
                ),
            )
        except BaseException:
            _release_writer_lock(self._lock_path(run_id))
            raise

        def join(con: duckdb.DuckDBPyConnection) -> str:
            found = con.execute("SELECT status, config_hash FROM runs WHERE run_id = ?", [run_id]).fetchall()
            if not found:
                self._insert_run(con, row)
                return "running"
            status, config_hash = found[0]
            if config_hash != row["config_hash"]:
                raise WarehouseError(
                    f"run {run_id} exists with another configuration (hash {str(config_hash)[:12]}, "
                    f"this worker's {row['config_hash'][:12]}); every worker of a run needs the "
                    "same flags, or give another --run-id"
                )
            if status in ("failed", "interrupted"):  # a worker runs again after the run stopped: reopen it
                con.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL WHERE run_id = ?",
                    [run_id],
                )
                return "running"
            return status

        try:
            status = self._transact(join, f"joining run {run_id} as shard {label}")
            committed = self.committed_problems(run_id)
        except BaseException:
            self._let_go(run_id, shard_lock)
            raise
        if status == "complete":
            self._let_go(run_id, shard_lock)
        else:
            self._runs[run_id] = _RunState(committed, shard=label, shard_lock=shard_lock)
        return run_id, committed, status

    def finish_shard(self, run_id: str) -> dict:
        """End this process's shard of the run; complete the run when every planned problem is committed.

        Returns {"status", "problems_committed", "problems_planned"} as the run stands after it. A run
        whose problems were committed twice (workers sliced the run differently) is refused, never completed.
        """
        state = self._runs.pop(run_id, None)
        if state is None or state.shard is None:
            raise WarehouseError(f"finish_shard: this process is not a shard worker of run {run_id}")
        assert state.shard_lock is not None  # join_run sets shard and shard_lock together
        _release_writer_lock(
            state.shard_lock
        )  # this shard's rows are all in: the shard may run again (it skips)

        def close(con: duckdb.DuckDBPyConnection) -> dict:
            status = self._status(con, run_id)
            total, distinct_ids, planned = con.execute(
                "SELECT count(*), count(DISTINCT problem_id), "
                "(SELECT n_problems_planned FROM runs WHERE run_id = $run) "
                "FROM run_problems WHERE run_id = $run",
                {"run": run_id},
            ).fetchall()[0]
            if total != distinct_ids:
                raise WarehouseError(
                    f"run {run_id} holds {total - distinct_ids} problem(s) committed twice: its "
                    "workers did not slice it alike (same --shard N and --batch-size for all); "
                    "delete the run and start it again"
                )
            if status == "running" and planned is not None and distinct_ids >= planned:
                con.execute(
                    "UPDATE runs SET status = 'complete', finished_at = ? WHERE run_id = ? "
                    "AND status = 'running'",
                    [_now(), run_id],
                )
                status = "complete"
            return {"status": status, "problems_committed": distinct_ids, "problems_planned": planned}

        try:
            return self._transact(close, f"finishing shard {state.shard} of run {run_id}")
        finally:
            _release_writer_lock(self._lock_path(run_id))

    def leave_run(self, run_id: str) -> None:
        """A shard worker stops without finishing (an error): the run stays running, its rows stay."""
        state = self._runs.pop(run_id, None)
        if state is not None and state.shard_lock is not None:
            self._let_go(run_id, state.shard_lock)

    def _let_go(self, run_id: str, shard_lock: Path) -> None:
        _release_writer_lock(shard_lock)
        _release_writer_lock(self._lock_path(run_id))

    def resume_run(self, spec: str) -> set[str]:
        """Reopen a running, failed or interrupted run for appending; returns the problems committed."""
        run_id = self.resolve_run(spec)

        def reopen(con: duckdb.DuckDBPyConnection) -> None:
            status = self._status(con, run_id)
            if status == "complete":
                raise RunClosed(f"run {run_id} is complete; complete runs are immutable")
            con.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL WHERE run_id = ?",
                [run_id],
            )

        with self._claiming(run_id):  # first of all: is another process writing this run?
            self._transact(reopen, f"resuming run {run_id}")
        self._runs.pop(run_id, None)
        return self.committed_problems(run_id)

    def committed_problems(self, run_id: str) -> set[str]:
        """Problems whose rows are committed for this run (what resume skips)."""
        with self.cursor() as con:
            rows = con.execute("SELECT problem_id FROM run_problems WHERE run_id = ?", [run_id]).fetchall()
        return {r[0] for r in rows}

    def finish_run(self, run_id: str, status: str = "complete", error: str | None = None) -> None:
        """End a run: set its status (complete runs are immutable from then on; failed and interrupted
        runs resume)."""
        if status not in ("complete", "failed", "interrupted"):
            raise WarehouseError("a run finishes as complete, failed or interrupted")
        with self.cursor() as con:
            if self._status(con, run_id) != "running":
                raise RunClosed(f"run {run_id} is not running")
        self._claim(run_id)

        def close(con: duckdb.DuckDBPyConnection) -> None:
            updated = con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? "
                "WHERE run_id = ? AND status = 'running'",
                [status, _now(), error, run_id],
            ).fetchall()[0][0]
            if updated != 1:
                raise RunClosed(f"run {run_id} was closed or deleted by another process")

        self._transact(close, f"finishing run {run_id}")
        self._runs.pop(run_id, None)
        _release_writer_lock(self._lock_path(run_id))

    def delete_run(self, spec: str) -> dict:
        """Remove a run and every row of it, in one transaction. Its problems stay: runs share them.

        The rows leave the current snapshot at once; their files stay on disk for time travel until
        `vacuum` expires the snapshots that still see them.
        """
        run_id = self.resolve_run(spec)
        self._claim(run_id)  # never delete a run another process is writing
        removed = {"run_id": run_id, **self.row_counts(run_id)}

        def delete(con: duckdb.DuckDBPyConnection) -> None:
            for table in (*schema.FACT_TABLES, "probe_results", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])

        self._transact(delete, f"deleting run {run_id}")
        self._runs.pop(run_id, None)
        for stale in (self.path / lake.LOCKS).glob(f"{glob.escape(run_id)}.shard-*-of-*.lock"):
            stale.unlink(missing_ok=True)  # its shard workers' (none runs: they would hold the run lock)
        _release_writer_lock(self._lock_path(run_id), unlink=True)
        return removed

    def annotate_run(
        self,
        spec: str,
        *,
        name: str | None = _UNSET,
        tags: Mapping[str, Any] | None = None,
        untag: Iterable[str] = (),
        note: str | None = _UNSET,
    ) -> dict[str, Any]:
        """Change a run's labels (any run, in any status, also while it is written): `name` and `note`
        replace the old ones (None clears them), `tags` are merged into its tags, `untag` keys removed.
        Returns the run's labels afterwards: run_id, name, tags, note."""
        run_id = self.resolve_run(spec)
        changes: dict[str, Any] = {}
        if name is not _UNSET:
            changes["name"] = None if name is None else labels.check_name(name)
        if note is not _UNSET:
            changes["note"] = None if note is None else labels.check_note(note)
        new_tags = labels.check_tags(tags or {})
        gone = [labels.check_key(k) for k in untag]

        def update(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            found = con.execute("SELECT name, tags, note FROM runs WHERE run_id = ?", [run_id]).fetchall()
            if not found:
                raise UnknownRun(f"run {run_id} was deleted by another process")
            row = dict(zip(("name", "tags", "note"), found[0], strict=True))
            merged = {**labels.read_tags(row["tags"]), **new_tags}
            missing = [k for k in gone if k not in merged]
            if missing:
                raise WarehouseError(
                    f"run {run_id} has no tag {', '.join(missing)}; its tags: "
                    f"{labels.format_tags(merged) or '(none)'}"
                )
            for key in gone:
                del merged[key]
            row.update(changes, tags=labels.tags_json(merged))
            con.execute(
                "UPDATE runs SET name = ?, tags = ?, note = ? WHERE run_id = ?",
                [row["name"], row["tags"], row["note"], run_id],
            )
            return {"run_id": run_id, **row, "tags": labels.read_tags(row["tags"])}

        return self._transact(update, f"labelling run {run_id}")

    def vacuum(self, older_than_days: float = 7.0) -> dict:
        """Reclaim disk: expire snapshots older than the given age, then delete the files only they saw.

        This is the one place besides `delete_run` that removes data: what a deleted run left, and the
        history (time travel) older than the cutoff. Files a killed writer never committed are removed
        once they are a day old (younger ones may belong to a commit in progress).
        """
        if not older_than_days >= 0:
            raise WarehouseError(f"--older-than must be a number of days >= 0, got {older_than_days}")
        cutoff = _now() - dt.timedelta(days=older_than_days)
        orphan_cutoff = min(cutoff, _now() - dt.timedelta(days=1))
        with self.cursor() as con:
            before = con.execute(f"SELECT count(*) FROM {lake.METADATA}.ducklake_snapshot").fetchall()[0][0]
            con.execute(f"CALL ducklake_expire_snapshots('{lake.ALIAS}', older_than => ?)", [cutoff])
            old = con.execute(
                f"CALL ducklake_cleanup_old_files('{lake.ALIAS}', cleanup_all => true)"
            ).fetchall()
            orphans = con.execute(
                f"CALL ducklake_delete_orphaned_files('{lake.ALIAS}', older_than => ?)", [orphan_cutoff]
            ).fetchall()
            after = con.execute(f"SELECT count(*) FROM {lake.METADATA}.ducklake_snapshot").fetchall()[0][0]
        return {
            "snapshots_expired": before - after,
            "files_removed": len(old),
            "orphans_removed": len(orphans),
        }

    def _lock_path(self, run_id: str) -> Path:
        return self.path / lake.LOCKS / f"{run_id}.lock"

    def _shard_lock_path(self, run_id: str, index: int, count: int) -> Path:
        return self.path / lake.LOCKS / f"{run_id}.shard-{index}-of-{count}.lock"

    def _claim(self, run_id: str) -> None:
        """This process becomes the run's only writer until it finishes the run (RunBusy if taken)."""
        _hold_writer_lock(self._lock_path(run_id), run_id)

    @contextlib.contextmanager
    def _claiming(self, run_id: str) -> Iterator[None]:
        """Claim the run for the block; should the block fail, let go of a claim taken here."""
        taken = _hold_writer_lock(self._lock_path(run_id), run_id)
        try:
            yield
        except BaseException:
            if taken:
                _release_writer_lock(self._lock_path(run_id))
            raise

    def resolve_run(self, spec: str) -> str:
        """A full run id, `latest` (the run begun last: the highest run_seq, whatever the clocks of the
        machines that began them said), the name of exactly one run, or a unique prefix of a run id."""
        with self.cursor() as con:
            if spec == "latest":
                latest = con.execute(
                    "SELECT run_id FROM runs ORDER BY run_seq DESC NULLS LAST, started_at DESC, "
                    "run_id DESC LIMIT 1"
                ).fetchall()
                if not latest:
                    raise UnknownRun("there are no runs yet; start one with `python cli.py run`")
                return latest[0][0]
            found = [
                r[0]
                for r in con.execute(
                    "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id", [spec]
                ).fetchall()
            ]
            named = [
                r[0]
                for r in con.execute(
                    "SELECT run_id FROM runs WHERE name = ? ORDER BY run_seq, run_id", [spec]
                ).fetchall()
            ]
        if spec in found:
            return spec
        if len(named) == 1:
            return named[0]
        if named:
            raise UnknownRun(
                f"{len(named)} runs are named {spec!r} ({', '.join(named[:4])}"
                f"{', ...' if len(named) > 4 else ''}); give one's id (or a unique prefix)"
            )
        if len(found) == 1:
            return found[0]
        if not found:
            raise UnknownRun(f"no run matches {spec!r}; `python cli.py runs` lists them")
        raise UnknownRun(
            f"{spec!r} is ambiguous: {len(found)} runs match ({', '.join(found[:4])}"
            f"{', ...' if len(found) > 4 else ''}); give more of the run id"
        )

    def list_runs(self, tags: Mapping[str, str] | None = None) -> list[dict]:
        """Every run (with `tags`: those carrying every one of them), oldest first: its labels, status,
        model, problems planned and committed, patch layers, methods, seed, start, end and wall-clock
        seconds. A run with an unreadable data file shows as damaged."""
        wanted = labels.check_tags(tags or {})
        where = " AND ".join("json_extract_string(r.tags, ?) = ?" for _ in wanted) or "true"
        params = [v for key, value in wanted.items() for v in (f'$."{key}"', value)]
        with self.cursor() as con:
            rel = con.sql(
                "SELECT r.run_id, r.name, r.status, r.model_name, r.dataset_name, r.n_problems_planned, "
                "coalesce(c.n, 0) AS problems_committed, r.patch_layers, r.methods, r.sigmas, r.seed, "
                "r.started_at, r.finished_at, "
                "round(epoch(r.finished_at) - epoch(r.started_at), 3) AS seconds, "
                "r.convention, r.tags, r.note, r.parent_run_id "
                "FROM runs r LEFT JOIN (SELECT run_id, count(*) AS n FROM run_problems GROUP BY run_id) c "
                f"USING (run_id) WHERE {where} ORDER BY r.run_seq NULLS FIRST, r.started_at, r.run_id",
                params=params,
            )
            runs = rel.pl().to_dicts()
        damaged = self.damaged_files()
        for run in runs:
            run["tags"] = labels.read_tags(run["tags"])
            bad = _files_of(damaged, run["run_id"])
            run["damaged_files"] = len(bad)
            if bad:
                run["status"] = "damaged"
        return runs

    def show_run(self, spec: str) -> dict:
        """One run: its runs row (config and library versions parsed, tags as a dict), `kind` (what made
        it), `problems` (committed: its run_problems, or for a run with none, the problems its results
        name), its rows per fact table and its damaged files."""
        run_id = self.resolve_run(spec)
        with self.cursor() as con:
            run = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id]).pl().to_dicts()[0]
        for key in ("config_json", "library_versions"):
            run[key] = json.loads(run[key]) if run[key] else None
        run["tags"] = labels.read_tags(run["tags"])
        run["kind"] = run_kind(run)
        run["damaged_files"] = [d.line() for d in _files_of(self.damaged_files([run_id]), run_id)]
        if run["damaged_files"]:
            run["status"] = "damaged"  # its rows as the catalog recorded them; the files cannot be scanned
            rows = self._catalog_row_counts(run_id)
            return {**run, "problems": rows["run_problems"], "rows": rows}
        rows = self.row_counts(run_id)
        problems = rows["run_problems"]
        if not problems and rows["results"]:  # rows written without commit markers (not by this program)
            with self.cursor() as con:
                problems = con.execute(
                    "SELECT count(DISTINCT problem_id) FROM results WHERE run_id = ?", [run_id]
                ).fetchall()[0][0]
        return {**run, "problems": problems, "rows": rows}

    # --- the notebook face -----------------------------------------------------------------------
    def run(self, spec: str = "latest") -> Run:
        """A handle on one run: a full run id, a unique prefix of one, or `latest` (UnknownRun if none)."""
        return Run(self, self.resolve_run(spec))

    def runs(self, tags: Mapping[str, str] | None = None) -> pl.DataFrame:
        """Every run (with `tags`: those carrying all of them) as list_runs describes it, oldest first."""
        return pl.DataFrame(self.list_runs(tags))

    def sql(self, query: str, timeout: float | None = None) -> pl.DataFrame:
        """The result of a read-only query as polars (the guard of `cli.py query`: nothing can write,
        attach, install or export); an empty frame for a statement that returns nothing."""
        if timeout is not None and not timeout > 0:
            raise WarehouseError(f"timeout must be a positive number of seconds, got {timeout}")
        table = guard.run_statements(self.reader, guard.check_read_only(query), timeout)
        return pl.DataFrame() if table is None else pl.from_arrow(table)  # type: ignore[return-value]

    def _catalog_row_counts(self, run_id: str) -> dict[str, int]:
        """Rows per fact table as the catalog recorded them at commit (no data file is read)."""
        return self._catalog_sums(run_id, "record_count")

    def storage_bytes(self, run_id: str) -> dict[str, int]:
        """Bytes of Parquet per fact table that the run's rows take on disk (the catalog's sizes of the files
        that hold only this run's rows: each commit writes one run)."""
        return self._catalog_sums(run_id, "file_size_bytes")

    def _catalog_sums(self, run_id: str, column: str) -> dict[str, int]:
        """A data-file column of the catalog (record_count, file_size_bytes) summed per fact table over the
        run's files (a file's run is its run_id statistic)."""
        meta = lake.METADATA
        with self.cursor() as con:
            found = dict(
                con.execute(
                    f"""
                SELECT t.table_name, sum(f.{column})::BIGINT
                FROM {meta}.ducklake_data_file f
                JOIN {meta}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
                JOIN {meta}.ducklake_column c ON c.table_id = f.table_id AND c.column_name = 'run_id'
                     AND c.end_snapshot IS NULL
                JOIN {meta}.ducklake_file_column_stats s ON s.data_file_id = f.data_file_id
                     AND s.column_id = c.column_id
                WHERE f.end_snapshot IS NULL AND s.min_value = ? AND s.max_value = ?
                GROUP BY 1""",
                    [run_id, run_id],
                ).fetchall()
            )
        return {t: int(found.get(t, 0)) for t in schema.FACT_TABLES}

    def row_counts(self, run_id: str) -> dict[str, int]:
        """Committed rows per fact table."""
        with self.cursor() as con:
            return {
                t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchall()[0][0]
                for t in schema.FACT_TABLES
            }

    @staticmethod
    def _status(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
        found = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if not found:
            raise UnknownRun(f"no run {run_id!r}")
        return found[0][0]

    # --- damage ---------------------------------------------------------------------------------
    def damaged_files(self, run_ids: list[str] | None = None) -> dict[str | None, list[DamagedFile]]:
        """Data files of the current snapshot that are missing, truncated, unreadable or corrupt, by run.

        Checks each file's size against the catalog and parses its Parquet footer (cheap: no data
        pages are read). Each commit writes the rows of one run, so a file's run is its run_id
        column's min (= max) statistic.
        """
        found: dict[str | None, list[DamagedFile]] = {}
        for table, path, size, run_id in self._data_files(run_ids):
            problem = _file_problem(path, size)
            if problem:
                found.setdefault(run_id, []).append(DamagedFile(run_id, table, path, problem))
        return found

    def _data_files(self, run_ids: list[str] | None) -> list[tuple[str, str, int, str | None]]:
        meta = lake.METADATA
        with self.cursor() as con:
            rows = con.execute(f"""
                SELECT t.table_name, f.data_file_id, f.path, f.path_is_relative, f.file_size_bytes,
                       CASE WHEN s.min_value = s.max_value THEN s.min_value END AS run_id
                FROM {meta}.ducklake_data_file f
                JOIN {meta}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
                LEFT JOIN {meta}.ducklake_column c ON c.table_id = f.table_id AND c.column_name = 'run_id'
                     AND c.end_snapshot IS NULL
                LEFT JOIN {meta}.ducklake_file_column_stats s ON s.data_file_id = f.data_file_id
                     AND s.column_id = c.column_id
                WHERE f.end_snapshot IS NULL""").fetchall()
            listed = {}
            for table in {r[0] for r in rows}:
                for path, size in con.execute(
                    f"SELECT data_file, data_file_size_bytes FROM ducklake_list_files('{lake.ALIAS}', ?)",
                    [table],
                ).fetchall():
                    listed[os.path.basename(path)] = (path, size)
        out = []
        for table, _fid, rel_path, _rel, size, run_id in rows:
            if table not in schema.FACT_TABLES and table != "problems_base":
                continue
            if run_ids is not None and run_id is not None and run_id not in run_ids:
                continue
            path, listed_size = listed.get(os.path.basename(rel_path), (str(rel_path), size))
            out.append((table, path, listed_size, run_id))
        return out

    def check_runs(self, run_ids: list[str]) -> None:
        """Raise RunDamaged (one line: run, file, what to do) if a run has an unreadable data file."""
        _refuse_damaged(self.damaged_files(run_ids), run_ids)

    def _explain(self, exc: BaseException) -> RunDamaged | None:
        """If a query failed reading data (DuckDB's messages do not always name the file), and some data
        file is damaged, say which run and file, and what to do."""
        if not isinstance(exc, duckdb.Error) or isinstance(
            exc,
            (
                duckdb.ParserException,
                duckdb.BinderException,
                duckdb.CatalogException,
                duckdb.InterruptException,
            ),
        ):
            return None  # the query's own mistakes, or a timeout: not about files
        bad = self.damaged_files()
        if not bad:
            return None
        named = [
            run for run, files in bad.items() if any(os.path.basename(f.path) in str(exc) for f in files)
        ]
        run_id = named[0] if named else min(bad, key=lambda r: r or "")
        message = _damage_message(run_id, bad[run_id])
        others = sorted(r or "(several runs)" for r in bad if r != run_id)
        if others and not named:  # DuckDB did not say which file: name every run that has one
            message += f" (runs with unreadable files too: {', '.join(others)})"
        return RunDamaged(message)

    # --- appending ------------------------------------------------------------------------------
    def append_problem(
        self, run_id: str, problem: _Rows, results: _Rows, attention: _Rows | None = None
    ) -> None:
        """Commit one problem's rows (its problem row, results and attention) atomically."""
        problem_table = conform(problem, "problems", run_id)
        if problem_table.num_rows != 1:
            raise WarehouseError(f"append_problem takes one problem row, got {problem_table.num_rows}")
        problem_id = problem_table.column("problem_id")[0].as_py()
        self._commit(
            run_id,
            [problem_id],
            {
                "problems": problem_table,
                "results": conform(results, "results", run_id, problem_id),
                "attention": conform(attention, "attention", run_id, problem_id),
            },
        )

    def append_problems(
        self,
        run_id: str,
        problems: _Rows,
        results: _Rows,
        attention: _Rows | None = None,
        ordinals: Sequence[int] | None = None,
        readouts: Mapping[str, _Rows | None] | None = None,
    ) -> None:
        """Commit several problems' rows in one batch (one transaction); frames carry problem_id.

        `ordinals`: each problem's position in the run's problem order, which a shard worker must give
        (the problems of other workers fill the gaps); a single writer's problems are numbered in
        commit order when left out. `readouts`: rows of schema.READOUT_TABLES (states, decoding,
        question_tokens, token_attention) by table name, when the run records them.
        """
        unknown = sorted(set(readouts or {}) - set(schema.READOUT_TABLES))
        if unknown:
            raise WarehouseError(
                f"append_problems: unknown readout table(s) {', '.join(unknown)}; "
                f"known: {', '.join(schema.READOUT_TABLES)}"
            )
        problem_table = conform(problems, "problems", run_id)
        ids = problem_table.column("problem_id").to_pylist()
        if len(set(ids)) != len(ids):
            raise WarehouseError("append_problems: a problem appears twice in the batch")
        if ordinals is not None and len(ordinals) != len(ids):
            raise WarehouseError(f"append_problems: {len(ordinals)} ordinals for {len(ids)} problems")
        tables = {
            "problems": problem_table,
            "results": conform(results, "results", run_id),
            "attention": conform(attention, "attention", run_id),
            **{name: conform((readouts or {}).get(name), name, run_id) for name in schema.READOUT_TABLES},
        }
        for name in ("results", "attention", *schema.READOUT_TABLES):
            stray = distinct(tables[name].column("problem_id")) - set(ids)
            if stray:
                raise WarehouseError(f"{name} rows for problems not in the batch: {sorted(stray)[:3]}")
        self._commit(run_id, ids, tables, ordinals)

    def _state(self, run_id: str) -> _RunState:
        state = self._runs.get(run_id)
        if state is None:
            with self.cursor() as con:
                status = self._status(con, run_id)
                if status != "running":
                    raise RunClosed(
                        f"run {run_id} is {status}; "
                        + ("complete runs are immutable" if status == "complete" else "resume it first")
                    )
                self._claim(run_id)
                done = con.execute(
                    "SELECT problem_id, ordinal FROM run_problems WHERE run_id = ?", [run_id]
                ).fetchall()
            state = _RunState({p for p, _ in done}, max((o for _, o in done), default=-1) + 1)
            self._runs[run_id] = state
        return state

    def _commit(
        self,
        run_id: str,
        problem_ids: list[str],
        tables: dict[str, pa.Table],
        ordinals: Sequence[int] | None = None,
    ) -> None:
        state = self._state(run_id)
        again = [p for p in problem_ids if p in state.committed]
        if again:
            raise WarehouseError(f"problem {again[0]} is already committed for run {run_id}")
        if state.shard is not None and ordinals is None:
            raise WarehouseError(
                f"shard {state.shard} of run {run_id}: a shard worker's problems need their "
                "ordinals (positions in the run's problem order)"
            )
        for name in ("results", "attention", *schema.READOUT_TABLES):
            if name not in tables:
                continue
            duplicate = duplicate_key(tables[name], name)
            if duplicate:
                raise WarehouseError(
                    f"{name}: the batch repeats the key {duplicate}; each (run, problem, "
                    "condition) is measured once"
                )
        first = state.next_ordinal
        numbers = range(first, first + len(problem_ids)) if ordinals is None else [int(o) for o in ordinals]
        tables["run_problems"] = conform(
            pa.table(
                {
                    "problem_id": problem_ids,
                    "ordinal": pa.array(numbers, pa.int32()),
                    "committed_at": pa.array([_now()] * len(problem_ids), pa.timestamp("us")),
                }
            ),
            "run_problems",
            run_id,
        )

        # A single writer holds the run's lock exclusively (taken in _state): no other process can
        # append to, finish or delete the run, so no status or committed-problem query is needed in the
        # transaction. Shard workers share the run; each checks its batch is not in the run yet (a worker
        # sliced another way would otherwise commit a problem twice).
        fresh = self._unknown_problems(tables["problems"])

        def write(con: duckdb.DuckDBPyConnection) -> None:
            if state.shard is not None:
                con.register("incoming_ids", pa.table({"problem_id": problem_ids}))
                there = con.execute(
                    "SELECT problem_id FROM run_problems WHERE run_id = ? AND problem_id IN "
                    "(SELECT problem_id FROM incoming_ids) LIMIT 1",
                    [run_id],
                ).fetchall()
                if there:
                    raise WarehouseError(
                        f"shard {state.shard} of run {run_id}: problem {there[0][0]} is already "
                        "committed by another worker; every worker of a run needs the same "
                        "--shard N and --batch-size"
                    )
            if fresh.num_rows:
                con.register("incoming_problems", fresh)
                con.execute("INSERT INTO problems_base BY NAME SELECT * FROM incoming_problems")
            for name in schema.FACT_TABLES:
                if name in tables and tables[name].num_rows:
                    con.register(f"incoming_{name}", tables[name])
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming_{name}")

        self._transact(write, f"committing {len(problem_ids)} problem(s) of run {run_id}")
        self._known_problems.update(fresh.column("problem_id").to_pylist())
        state.committed.update(problem_ids)
        state.next_ordinal = max(state.next_ordinal, max(numbers, default=first - 1) + 1)

    # --- derived results ------------------------------------------------------------------------
    def replace_probe_results(self, run_id: str, probe_set: str, rows: _Rows) -> int:
        """Replace probe set `probe_set` of run `run_id` in probe_results with `rows`, in one transaction.

        Probe results are derived from a run's states, not measured: they may be written for a run in
        any status, complete runs included, and a rerun with the same settings (the same probe set)
        replaces that set's rows instead of adding to them. Returns the rows written.
        """
        table = conform(rows, "probe_results", run_id)
        sets = distinct(table.column("probe_set"))
        if table.num_rows and sets != {probe_set}:
            raise WarehouseError(f"probe_results: rows for another probe set than {probe_set!r}")

        def replace(con: duckdb.DuckDBPyConnection) -> int:
            self._status(con, run_id)  # UnknownRun if it was deleted meanwhile
            con.execute("DELETE FROM probe_results WHERE run_id = ? AND probe_set = ?", [run_id, probe_set])
            if table.num_rows:
                con.register("incoming_probe_results", table)
                con.execute("INSERT INTO probe_results BY NAME SELECT * FROM incoming_probe_results")
            return table.num_rows

        return self._transact(replace, f"writing probe set {probe_set} of run {run_id}")

    # --- problems -------------------------------------------------------------------------------
    def _unknown_problems(self, problems: pa.Table) -> pa.Table:
        """The rows of `problems` not yet in problems_base (known ids are read once, then cached).

        Two processes adding the same new problem at once may both store it; the `problems` view
        keeps one row per id (ids are content hashes, so such rows are identical).
        """
        if self._known_problems_loaded is False:
            with self.cursor() as con:
                self._known_problems.update(
                    r[0] for r in con.execute("SELECT problem_id FROM problems_base").fetchall()
                )
            self._known_problems_loaded = True
        keep = [pid not in self._known_problems for pid in problems.column("problem_id").to_pylist()]
        return problems.filter(pa.array(keep, pa.bool_()))

    def upsert_problems(self, problems: _Rows) -> int:
        """Add problems to problems_base; ids already there are kept as they are. Returns rows added."""
        incoming = conform(problems, "problems", run_id="")

        def insert(con: duckdb.DuckDBPyConnection) -> int:
            con.register("incoming", incoming)
            before = con.execute("SELECT count(*) FROM problems_base").fetchall()[0][0]
            con.execute(
                "INSERT INTO problems_base BY NAME SELECT * FROM incoming WHERE problem_id NOT IN "
                "(SELECT problem_id FROM problems_base) "
                "QUALIFY row_number() OVER (PARTITION BY problem_id) = 1"
            )
            return con.execute("SELECT count(*) FROM problems_base").fetchall()[0][0] - before

        added = self._transact(insert, "adding problems")
        self._known_problems_loaded = False
        self._known_problems.clear()
        return added


def run_kind(run: Mapping[str, Any]) -> str:
    """What made a run, from its stored config: `engine` (python cli.py run, in one process or as
    shards), `legacy` (a research script's result file, ingest legacy) or `other` (the Python API)."""
    config = run.get("config_json") or {}
    if "legacy_format" in config or run.get("convention") == "legacy":
        return "legacy"
    if {"methods", "layers", "seed"} <= config.keys():
        return "engine"
    return "other"


def duplicate_key(table: pa.Table, name: str) -> str | None:
    """The first key of table `name` that `table` holds twice, as text (None if every key is unique)."""
    found = first_duplicate(table, schema.KEYS[name])
    return None if found is None else ", ".join(f"{k}={v}" for k, v in found.items())


def _file_problem(path: str, size: int | None) -> str | None:
    """Why a data file cannot be read (None when it is fine): missing, unreadable, truncated, corrupt."""
    try:
        found = os.stat(path).st_size
    except FileNotFoundError:
        return "the file is missing"
    except OSError as exc:
        return f"cannot be opened: {_printable(exc.strerror or str(exc))}"
    if size is not None and found != size:
        return f"size {found:,} bytes, the catalog recorded {size:,}: truncated or overwritten"
    try:
        pq.read_metadata(path)
    except PermissionError:
        return "permission denied (a file another user cannot read? ask its owner to make it group-readable)"
    except (OSError, pa.ArrowException, ValueError) as exc:
        return f"corrupt Parquet footer: {_printable(str(exc))}"
    return None


def _printable(text: str, limit: int = 80) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return "".join(ch if ch.isprintable() else "?" for ch in first)[:limit]


def _files_of(damaged: dict[str | None, list[DamagedFile]], run_id: str) -> list[DamagedFile]:
    """The damaged files a run reads: its own, and any holding rows of several runs."""
    return damaged.get(run_id, []) + damaged.get(None, [])


def _refuse_damaged(damaged: dict[str | None, list[DamagedFile]], run_ids: Iterable[str]) -> None:
    for run_id in run_ids:
        files = _files_of(damaged, run_id)
        if files:
            raise RunDamaged(_damage_message(run_id, files))


def _damage_message(run_id: str | None, files: list[DamagedFile]) -> str:
    first = files[0]
    more = f" and {len(files) - 1} more" if len(files) > 1 else ""
    who = f"run {run_id}" if run_id else "the warehouse"
    fix = (
        f"restore the file from a backup of the warehouse folder, or `python cli.py runs delete {run_id}` "
        "and run it again"
        if run_id
        else "restore the file from a backup of the warehouse folder"
    )
    return f"{who} has an unreadable data file, {first.line()}{more}; other runs are unaffected; {fix}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_warehouse(
    path: str | os.PathLike, read_only: bool = False, durable: bool = True, catalog: str | None = None
) -> Warehouse:
    """The warehouse folder at `path`; created (tables, views) unless read_only.

    read_only attaches the lake read-only: nothing can be written through it. durable=False skips the
    fsync of each commit's Parquet files (safe against killed processes, not against power loss).
    catalog: for a new warehouse, `sqlite` (default: a file in the folder) or `postgres:<dsn>` (many
    writers, on many machines); an existing warehouse says itself where its catalog is.
    """
    return Warehouse(path, durable=durable, read_only=read_only, catalog=catalog).open()


__all__ = [
    "DamagedFile",
    "Warehouse",
    "open_warehouse",
]
