"""A SQLAlchemy engine on the warehouse, for pandas and BI tools.

Uses duckdb-engine (Mause/duckdb_engine), the maintained DuckDB dialect for SQLAlchemy 2. Each
connection is a fresh in-memory DuckDB with the warehouse's lake attached read-only and in use
(closed after each use, NullPool), so a BI tool left open never blocks a run.
"""

from __future__ import annotations

import os

import sqlalchemy as sa


def engine(path: str | os.PathLike, **kwargs) -> sa.Engine:
    """`create_engine("duckdb://")` whose connections read the warehouse folder at `path`."""
    from duckdb_engine import ConnectionWrapper  # imported on use: importing it next to torch is slow

    from warehouse.store import open_warehouse

    open_warehouse(path, read_only=True).close()  # refuse a bad path now, not at the first query

    def creator():
        store = open_warehouse(path, read_only=True)
        con = store._con.cursor()
        con.execute("USE wh")
        wrapper = ConnectionWrapper(con)
        wrapper._codi_store = store  # keep the attached database alive as long as the connection
        return wrapper

    kwargs.setdefault("poolclass", sa.pool.NullPool)
    return sa.create_engine("duckdb://", creator=creator, **kwargs)
