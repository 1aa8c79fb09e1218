"""A SQLAlchemy engine on the warehouse (`duckdb:///path`), for pandas and BI tools.

Uses duckdb-engine (Mause/duckdb_engine), the maintained DuckDB dialect for SQLAlchemy 2. The
engine reads: connections open the file read-only, wait for the lock like every reader here, pin
the fact views to this file's shards, and are closed after each use (NullPool) so a BI tool left
open never blocks a run from beginning or finishing. Bulk loads bypass SQLAlchemy.
"""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from warehouse import connect, migrate
from warehouse.shards import Shards


def engine(path: str | os.PathLike, read_only: bool = True, **kwargs) -> sa.Engine:
    """`create_engine("duckdb:///<path>")`, read-only unless asked (a writer blocks runs)."""
    from duckdb_engine import ConnectionWrapper  # imported on use: see migrate.native_ddl

    path = Path(path).resolve()
    shards = Shards(path)

    def creator():
        con = connect.connect(path, read_only=read_only)
        migrate.pin_fact_views(con, shards)
        return ConnectionWrapper(con)

    kwargs.setdefault("poolclass", sa.pool.NullPool)
    return sa.create_engine(f"duckdb:///{path}", creator=creator, **kwargs)
