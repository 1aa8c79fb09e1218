"""`python cli.py query`: run SQL against the warehouse, read-only, from any process at any time.

Statements are checked before anything runs: only SELECT-like statements pass (SELECT, WITH,
FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA, CALL). Anything that writes, to the database or
to files (COPY), is refused with a message that says why; the connection is read-only besides.
"""
from __future__ import annotations

import sys
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


def run_query(db: str | Path, sql: str) -> pa.Table | None:
    """The result of the last statement (None if it returns nothing)."""
    statements = read_only_statements(sql)
    store = open_warehouse(db, read_only=True)
    with store.reader() as con:
        try:
            for statement in statements[:-1]:
                con.execute(statement)
            rel = con.sql(statements[-1])
            return rel.to_arrow_table() if rel is not None else None
        except duckdb.Error as exc:
            raise WarehouseError(_first_line(exc)) from exc


def query_command(db: str | Path, sql: str | None, file: str | None, fmt: str, out: str | None) -> int:
    """What the CLI runs: read SQL from the argument or --file, print or save it; returns rows."""
    if (sql is None) == (file is None):
        raise WarehouseError("give either a SQL statement or --file F")
    text = Path(file).read_text() if file else sql
    result = run_query(db, text)
    if result is None:
        return 0
    output.write(result, fmt, out, sys.stdout)
    return result.num_rows
