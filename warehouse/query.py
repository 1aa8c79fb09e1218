"""`python cli.py query`: run SQL against the warehouse, read-only, from any process at any time.

The checks and the timeout are warehouse/guard.py's (its docstring says what passes and what can be
stopped); this module opens the warehouse, runs the checked statements and writes the result.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from warehouse import output
from warehouse.errors import WarehouseError
from warehouse.guard import (  # noqa: F401  (re-exported: the guard's public names)
    GRACE_S,
    READ_ONLY_PRAGMAS,
    READ_ONLY_TABLE_FUNCTIONS,
    QueryAbandoned,
    QueryTimeout,
    _abandoned,
    check_read_only,
    run_statements,
)
from warehouse.store import Warehouse, open_warehouse


def run_query(
    db: str | Path, sql: str, timeout: float | None = None, *, store: Warehouse | None = None
) -> pa.Table | None:
    """The result of the last statement (None if it returns nothing); QueryTimeout after `timeout` s.

    `store`: the warehouse already opened read-only from `db`, which the caller closes (else it is
    opened here, and closed unless a statement was abandoned and still uses it).
    """
    if timeout is not None and not timeout > 0:
        raise WarehouseError(f"--timeout must be a positive number of seconds, got {timeout}")
    statements = check_read_only(sql)
    if store is not None:
        return run_statements(store.reader, statements, timeout)
    with _closing_unless_abandoned(open_warehouse(db, read_only=True)) as opened:
        return run_statements(opened.reader, statements, timeout)


@contextlib.contextmanager
def _closing_unless_abandoned(store: Warehouse) -> Iterator[Warehouse]:
    """Close the store after use, unless an abandoned statement may still run on its connection."""
    try:
        yield store
    finally:
        if not any(thread.is_alive() for thread in _abandoned):  # closing under one could block
            store.close()


def query_command(
    db: str | Path, sql: str | None, file: str | None, fmt: str, out: str | None, timeout: float | None = None
) -> int:
    """What the CLI runs: read SQL from the argument or --file, print or save it; returns rows.

    Everything is checked before any statement runs: the SQL, the format, and that --out is outside
    the warehouse folder. --out is written atomically (a temporary file beside it, then a rename).
    """
    if (sql is None) == (file is None):
        raise WarehouseError("give either a SQL statement or --file F")
    try:
        text = Path(file).read_text(encoding="utf-8") if file else sql
    except UnicodeDecodeError as exc:
        raise WarehouseError(
            f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason}); save the SQL file as UTF-8"
        ) from exc
    assert text is not None  # one of sql / file is given (checked above); the CLI never passes file=""
    check_read_only(text)
    output.check_format(fmt, out)
    with _closing_unless_abandoned(open_warehouse(db, read_only=True)) as store:
        target = output.check_out_path(out, store.path) if out else None
        result = run_query(db, text, timeout, store=store)
    if result is None:
        return 0
    output.write(result, fmt, target, sys.stdout)
    return result.num_rows
