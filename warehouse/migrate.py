"""Create a warehouse file at the current schema version, or migrate an older one forward.

A new file gets the DDL of `schema.metadata` directly; an existing file runs each migration above
its stamped version, in order, in the caller's transaction. Files from a newer program are refused
rather than guessed at. Shard files carry `codi_schema_version` in their Parquet metadata, and the
views read them with `union_by_name`, so a migration that adds a fact column needs no rewrite (old
shards read it as NULL).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import duckdb
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from engine.positions import NAMES
from warehouse import schema
from warehouse.shards import Shards

# version -> function(con) bringing a file from version - 1 to version. Example for a v2:
#   MIGRATIONS[2] = lambda con: con.execute("ALTER TABLE runs ADD COLUMN host TEXT")
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {}

FACT_VIEW_COMMENTS = {
    "results": "One row per run x problem x condition: outcome, KL/JS/entropy, log p(gold), disruption.",
    "attention": "Attention weight per run x problem x condition x layer x head x query (dst) x key (src).",
    "run_problems": "Commit marker: the problems committed for each run, in commit order.",
    "problems": "Every problem known to the warehouse (id = hash of the normalized question).",
}


class SchemaError(RuntimeError):
    """The file's schema version cannot be used by this program."""


def newer_message(where, version: int) -> str:
    return (f"warehouse {where} has schema version {version}, newer than this program's {schema.SCHEMA_VERSION}; "
            "upgrade codi-warehouse (pip install -e . in a newer checkout) to use it")


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                         "AND schema_name = 'main' AND table_name = 'schema_version'").fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]


def _database_path(con: duckdb.DuckDBPyConnection) -> str:
    found = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return found[0][0] if found and found[0][0] else "file"


def native_ddl() -> list[str]:
    """CREATE TABLE statements, compiled with SQLAlchemy's PostgreSQL dialect (which duckdb-engine
    extends; importing duckdb-engine itself next to torch makes DuckDB's bindings report leaks at exit)."""
    dialect = postgresql.dialect()
    return [str(CreateTable(t).compile(dialect=dialect)).strip() for t in schema.metadata.sorted_tables
            if t.info["storage"] == "table"]


def _stamp(con: duckdb.DuckDBPyConnection, version: int, note: str) -> None:
    con.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                [version, dt.datetime.now(dt.UTC).replace(tzinfo=None), note])


def _create(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in native_ddl():
        con.execute(ddl)
    values = ", ".join(f"({code}, '{name}')" for code, name in sorted(NAMES.items()))
    con.execute(f"INSERT INTO positions VALUES {values}")
    _stamp(con, schema.SCHEMA_VERSION, "created")


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the file to schema.SCHEMA_VERSION; returns the version it had before."""
    found = current_version(con)
    if found > schema.SCHEMA_VERSION:
        raise SchemaError(newer_message(_database_path(con), found))
    if found == 0:
        _create(con)
        return 0
    for version in range(found + 1, schema.SCHEMA_VERSION + 1):
        if version not in MIGRATIONS:
            raise SchemaError(f"no migration from schema version {version - 1} to {version}")
        MIGRATIONS[version](con)
        _stamp(con, version, f"migrated from {version - 1}")
    return found


def fact_view_sql(shards: Shards, temp: bool = False) -> dict[str, str]:
    """CREATE VIEW statements for the shard-backed relations, pinned to this shard directory."""
    kind = "TEMP VIEW" if temp else "VIEW"

    def scan(table: str) -> str:
        return f"read_parquet('{shards.glob(table)}', union_by_name = true, hive_partitioning = false)"

    sql = {t: f"CREATE OR REPLACE {kind} {t} AS SELECT * FROM {scan(t)}"
           for t in ("results", "attention", "run_problems")}
    sql["problems"] = (
        f"CREATE OR REPLACE {kind} problems AS SELECT * FROM main.problems_base UNION ALL BY NAME "
        f"SELECT * FROM {scan('problems')} WHERE problem_id NOT IN (SELECT problem_id FROM main.problems_base) "
        "QUALIFY row_number() OVER (PARTITION BY problem_id) = 1")
    return sql


def define_fact_views(con: duckdb.DuckDBPyConnection, shards: Shards, temp: bool = False) -> None:
    for name, sql in fact_view_sql(shards, temp).items():
        con.execute(sql)
        if not temp:
            con.execute(f"COMMENT ON VIEW {name} IS '{FACT_VIEW_COMMENTS[name]}'")


def pin_fact_views(con: duckdb.DuckDBPyConnection, shards: Shards) -> None:
    """If the stored views point elsewhere (the files were moved), shadow them with temp views.

    Temp views take precedence in name lookup, also inside the stored analysis views, so a moved
    warehouse reads correctly before it is next opened for writing (which rewrites the views).
    """
    stored = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'results' AND NOT temporary "
                         "AND schema_name = 'main' AND database_name = current_database()").fetchall()
    if not stored or shards.glob("results") not in stored[0][0]:
        define_fact_views(con, shards, temp=True)
