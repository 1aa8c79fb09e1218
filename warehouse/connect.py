"""DuckDB connections that wait for the file lock instead of failing.

DuckDB lets one process open a file for writing, or any number for reading, never both. Our writers
take the write lock only for short metadata transactions (begin, finish, delete), so readers and
writers simply retry until the lock is free. A reader that gives up says which process holds it.
"""
from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import duckdb

from warehouse.errors import WarehouseError

READ_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 600.0
_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock")
# DuckDB opens an existing CSV/JSON/Parquet file as an in-memory database with a view of it (writes
# would vanish), or refuses it read-only with this message; other files fail with the second one.
_NOT_DUCKDB_MESSAGES = ("Cannot launch in-memory database", "not a valid DuckDB database file")


class WarehouseBusy(TimeoutError):
    """The warehouse file stayed locked by another process for the whole timeout."""


class NotAWarehouse(WarehouseError):
    """--db names an existing file that is not a DuckDB database."""


def _not_duckdb(path: Path) -> NotAWarehouse:
    return NotAWarehouse(f"{path} is not a DuckDB file, so not a codi warehouse; point --db at a warehouse "
                         "file, or at a new path to create one")


def is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(m in str(exc) for m in _LOCK_MESSAGES)


def connect(path: str | Path, read_only: bool, timeout: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open `path`, retrying with jittered backoff while another process holds a conflicting lock."""
    timeout = (READ_TIMEOUT_S if read_only else WRITE_TIMEOUT_S) if timeout is None else timeout
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no warehouse at {path} (the first run or ingest creates it)")
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if any(m in str(exc) for m in _NOT_DUCKDB_MESSAGES):
                raise _not_duckdb(path) from None
            if not is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                holder = str(exc).split("Conflicting lock is held in", 1)[-1].split(".", 1)[0].strip()
                raise WarehouseBusy(f"warehouse {path} stayed locked for {timeout:.0f} s by {holder}; close "
                                    "the program holding it open for writing, then try again") from exc
        else:
            if con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                           ).fetchall()[0][0] is None:  # an in-memory stand-in for a CSV/JSON/Parquet file
                con.close()
                raise _not_duckdb(path)
            return con
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.1)


@contextlib.contextmanager
def locked(path: str | Path, timeout: float | None = None):
    """A write connection: the lock is held until the block ends, so keep the block short."""
    con = connect(path, read_only=False, timeout=timeout)
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(path: str | Path, timeout: float | None = None):
    """A write connection inside one transaction; committed on success, rolled back on error."""
    with locked(path, timeout) as con:
        con.begin()
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        con.commit()
