"""`python cli.py query`: run SQL against the warehouse, read-only, from any process at any time.

Statements are checked before anything runs: only SELECT-like statements pass (SELECT, WITH,
FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA, CALL). Anything that writes, to the database or
to files (COPY), is refused with a message that says why; the connection is read-only besides.
`timeout` (the CLI's `--timeout SECONDS`) interrupts a query that runs longer (DuckDB's `interrupt`,
called from a timer thread).
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse import output
from warehouse.errors import WarehouseError
from warehouse.store import open_warehouse

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA,
            duckdb.StatementType.CALL}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_only_statements(sql: str) -> list[str]:
    """The statements of `sql`, or a WarehouseError naming the first one that is not a read."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise WarehouseError(f"bad SQL: {_first_line(exc)}") from exc
    if not statements:
        raise WarehouseError("no SQL statement given")
    for statement in statements:
        if statement.type not in _ALLOWED:
            kind = statement.type.name
            raise WarehouseError(f"query is read-only: {kind} statements are refused "
                                 "(runs are written by `run`, `ingest` and `runs delete`)")
    return [s.query for s in statements]


class QueryTimeout(WarehouseError):
    """The query ran longer than its timeout and was interrupted."""


def run_query(db: str | Path, sql: str, timeout: float | None = None) -> pa.Table | None:
    """The result of the last statement (None if it returns nothing); interrupted after `timeout` s."""
    if timeout is not None and not timeout > 0:
        raise WarehouseError(f"--timeout must be a positive number of seconds, got {timeout}")
    statements = read_only_statements(sql)
    store = open_warehouse(db, read_only=True)
    with store.reader() as con:
        timer = threading.Timer(timeout, con.interrupt) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            for statement in statements[:-1]:
                con.execute(statement)
            rel = con.sql(statements[-1])
            return rel.to_arrow_table() if rel is not None else None
        except duckdb.InterruptException as exc:
            raise QueryTimeout(f"query stopped after --timeout {timeout:g} s; narrow it (filter on run_id, "
                               "add LIMIT) or give a longer --timeout") from exc
        except duckdb.Error as exc:
            raise WarehouseError(_first_line(exc)) from exc
        finally:
            if timer:
                timer.cancel()


def query_command(db: str | Path, sql: str | None, file: str | None, fmt: str, out: str | None,
                  timeout: float | None = None) -> int:
    """What the CLI runs: read SQL from the argument or --file, print or save it; returns rows."""
    if (sql is None) == (file is None):
        raise WarehouseError("give either a SQL statement or --file F")
    try:
        text = Path(file).read_text(encoding="utf-8") if file else sql
    except UnicodeDecodeError as exc:
        raise WarehouseError(f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason}); save the SQL "
                             "file as UTF-8") from exc
    result = run_query(db, text, timeout)
    if result is None:
        return 0
    output.write(result, fmt, out, sys.stdout)
    return result.num_rows
