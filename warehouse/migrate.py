"""Create a warehouse's tables at the current schema version, or migrate an older lake forward.

A new lake gets the DDL of `schema.metadata` directly; an existing one runs each migration above its
stamped version, in order, in the caller's transaction. Lakes from a newer program are refused rather
than guessed at. Version 1 was the old single-file layout (a DuckDB file and Parquet shards); it is
not migrated in place: `python cli.py upgrade OLD.duckdb --to FOLDER` copies it into a new folder
(warehouse/upgrade.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path

import duckdb

from warehouse import schema, views
from warehouse.vocab import NAMES


def _to_3(con: duckdb.DuckDBPyConnection) -> None:
    """JS and entropy at the answer number (older rows keep NULL there: they were measured at EOT only),
    and runs numbered in the order they began (existing runs by their start time)."""
    con.execute("ALTER TABLE results ADD COLUMN js_answer DOUBLE")
    con.execute("ALTER TABLE results ADD COLUMN entropy_answer DOUBLE")
    con.execute("ALTER TABLE runs ADD COLUMN run_seq BIGINT")
    con.execute(
        "UPDATE runs SET run_seq = s.n FROM (SELECT run_id, row_number() OVER (ORDER BY started_at, run_id) "
        "AS n FROM runs) s WHERE runs.run_id = s.run_id"
    )


def _to_4(con: duckdb.DuckDBPyConnection) -> None:
    """Labels a person gives a run: a name, key=value tags, a note (NULL for existing runs)."""
    con.execute("ALTER TABLE runs ADD COLUMN name VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN tags JSON")
    con.execute("ALTER TABLE runs ADD COLUMN note VARCHAR")


def _to_5(con: duckdb.DuckDBPyConnection) -> None:
    """How torch's CPU threads ran: their number and the OpenMP wait policy (NULL for existing runs: not
    recorded then)."""
    con.execute("ALTER TABLE runs ADD COLUMN threads INTEGER")
    con.execute("ALTER TABLE runs ADD COLUMN wait_policy VARCHAR")


def _to_6(con: duckdb.DuckDBPyConnection) -> None:
    """What each condition intervened on (family, site, head, thoughts, parts); NULL on existing rows, all of
    which are baseline or single-thought block-output rows (the views read NULL as those)."""
    for column, kind in (
        ("family", "VARCHAR"),
        ("site", "VARCHAR"),
        ("head", "SMALLINT"),
        ("thoughts", "SMALLINT[]"),
        ("parts", "VARCHAR"),
    ):
        con.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")


def _to_7(con: duckdb.DuckDBPyConnection) -> None:
    """What the thoughts hold: the readout tables (states, decoding, question_tokens, token_attention),
    empty for existing runs (they recorded none), and probe_results."""
    for table in (*schema.READOUT_TABLES, "probe_results"):
        con.execute(schema.ddl(table))


# version -> function(con) bringing a lake from version - 1 to version, in the caller's transaction
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    3: _to_3,
    4: _to_4,
    5: _to_5,
    6: _to_6,
    7: _to_7,
}
FIRST_LAKE_VERSION = 2
# Small tables live in the catalog itself (DuckLake data inlining); fact rows always go to Parquet.
INLINED_ROWS = 1000


class SchemaError(RuntimeError):
    """The warehouse's schema version cannot be used by this program."""


def newer_message(where, version: int) -> str:
    return (
        f"warehouse {where} has schema version {version}, newer than this program's {schema.SCHEMA_VERSION}; "
        "upgrade codi-warehouse (pip install -e . in a newer checkout) to use it"
    )


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The stamped schema version of the attached lake (0: no tables yet)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'schema_version'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]


def _stamp(con: duckdb.DuckDBPyConnection, version: int, note: str) -> None:
    con.execute(
        "INSERT INTO schema_version VALUES (?, ?, ?)",
        [version, dt.datetime.now(dt.UTC).replace(tzinfo=None), note],
    )


def create(con: duckdb.DuckDBPyConnection, warehouse_id: str, alias: str) -> None:
    """Every table of a new lake, the position names, the identity row and the version stamp.

    Three transactions (DuckLake sets table options only on committed tables); the caller builds the
    lake in a hidden folder and renames it into place, so a crash in between leaves nothing adopted.
    """
    con.execute(f"CALL {alias}.set_option('parquet_compression', 'zstd')")
    con.execute(f"CALL {alias}.set_option('data_inlining_row_limit', 0)")
    con.begin()
    for table in schema.stored_tables():
        con.execute(schema.ddl(table))
    con.commit()
    for table in schema.stored_tables():
        if schema.metadata.tables[table].info["storage"] != "fact":
            con.execute(
                f"CALL {alias}.set_option('data_inlining_row_limit', {INLINED_ROWS}, table_name => '{table}')"
            )
    con.begin()
    values = ", ".join(f"({code}, '{name}')" for code, name in sorted(NAMES.items()))
    con.execute(f"INSERT INTO positions VALUES {values}")
    con.execute("INSERT INTO warehouse_info VALUES (?, ?, NULL)", [warehouse_id, _now()])
    _stamp(con, schema.SCHEMA_VERSION, "created")
    con.commit()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def migrate(con: duckdb.DuckDBPyConnection, where) -> int:
    """Bring the lake to schema.SCHEMA_VERSION; returns the version it had before."""
    found = current_version(con)
    if found > schema.SCHEMA_VERSION:
        raise SchemaError(newer_message(where, found))
    for version in range(max(found, FIRST_LAKE_VERSION) + 1, schema.SCHEMA_VERSION + 1):
        if version not in MIGRATIONS:
            raise SchemaError(f"no migration from schema version {version - 1} to {version}")
        MIGRATIONS[version](con)
        _stamp(con, version, f"migrated from {version - 1}")
    return found


FACT_COMMENTS = {
    "results": "One row per run x problem x condition: outcome, KL/JS/entropy, log p(gold), disruption.",
    "attention": "Attention weight per run x problem x condition x layer x head x query (dst) x key (src).",
    "run_problems": "Commit marker: the problems committed for each run, in commit order.",
    "problems": "Every problem known to the warehouse (id = hash of the normalized question).",
    "states": "Baseline hidden state per run x problem x layer (-1: input) x position (T0..T5, EOT).",
    "decoding": "Logit lens: top-k tokens per run x problem x layer x position of the baseline states.",
    "question_tokens": "Question tokens per run x problem: id, text, and the number a token is part of.",
    "token_attention": "Baseline attention per run x problem x layer x head x query to each question token.",
    "probe_results": "Linear probes from a run's states to intermediate values, operations, steps (probe).",
}


def views_hash(queries_dir: str | Path = views.QUERIES_DIR) -> str:
    digest = hashlib.sha256(f"schema {schema.SCHEMA_VERSION}\n".encode())
    for path in views.view_files(queries_dir):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stored_views_hash(con: duckdb.DuckDBPyConnection) -> str | None:
    found = con.execute("SELECT views_hash FROM warehouse_info").fetchall()
    return found[0][0] if found else None


def apply_all_views(con: duckdb.DuckDBPyConnection, queries_dir: str | Path, digest: str) -> list[str]:
    """The `problems` view, every queries/*.sql view, the comments; records which files were applied."""
    con.execute(
        "CREATE OR REPLACE VIEW problems AS SELECT * FROM problems_base "
        "QUALIFY row_number() OVER (PARTITION BY problem_id ORDER BY question) = 1"
    )
    for name, text in FACT_COMMENTS.items():
        kind = "VIEW" if name == "problems" else "TABLE"
        quoted = text.replace("'", "''")
        con.execute(f"COMMENT ON {kind} {name} IS '{quoted}'")
    created = views.apply_views(con, queries_dir)
    con.execute("UPDATE warehouse_info SET views_hash = ?", [digest])
    return created
