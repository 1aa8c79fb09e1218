"""The hook for the analysis views: the SQL files of `queries/`, one folder per layer, applied in layer order.

    queries/macros/        macros (Wilson bounds, strata, finite, r_to_t, legacy notes)
    queries/staging/       stg_*: the fact tables renamed and typed, nothing else
    queries/intermediate/  int_*: baseline joins, per-problem importance, baseline attention; these read
                           each other, so their files keep a numeric prefix and run in name order
    queries/marts/         one view per file, named after it: what `stats`, `compare`, the charts and the
                           closing table of `run` read (they read only int_* and stg_*, never each other)

Within a layer files run in name order. `.sql` files directly in the folder (a flat folder, as tests
write) run first, in name order. Files are plain SQL (`CREATE OR REPLACE VIEW ...`), usable from any
DuckDB client. A file's first `-- ` comment line is its description; it is stored with COMMENT ON VIEW
on every view the file creates, so `views` (and any client reading duckdb_views()) can show it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

# CODI_QUERIES_DIR: another folder of view files (tests/mutate_sql.py points the tests at mutated copies).
QUERIES_DIR = Path(os.environ.get("CODI_QUERIES_DIR") or Path(__file__).resolve().parent.parent / "queries")
_CREATE_VIEW = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:\"[^\"]+\"|[\w]+)(?:\.(?:\"[^\"]+\"|\w+))?)",
    re.IGNORECASE,
)


def description(sql: str) -> str:
    """The first `-- ` comment line of a file, without its marker ('' if there is none)."""
    for line in sql.splitlines():
        if line.startswith("-- "):
            return line[3:].strip()
    return ""


def created_views(sql: str) -> list[str]:
    return [m.group(1) for m in _CREATE_VIEW.finditer(sql)]


LAYERS = ("macros", "staging", "intermediate", "marts")  # the folders of queries/, in the order they apply
MACROS = (
    Path("macros") / "macros.sql"
)  # relative to the queries folder: the macros alone (tests load them bare)


def view_files(folder: str | Path = QUERIES_DIR) -> list[Path]:
    """Every .sql file in the order it applies: files directly in `folder`, then each layer's, by name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.sql"), key=lambda p: p.name)
    for layer in LAYERS:
        files += sorted((folder / layer).glob("*.sql"), key=lambda p: p.name)
    return files


def apply_views(con: duckdb.DuckDBPyConnection, folder: str | Path = QUERIES_DIR) -> list[str]:
    """Run every .sql file of `folder` in layer, then name order; returns the views created. Errors name
    the file."""
    created = []
    for path in view_files(folder):
        sql = path.read_text()
        try:
            con.execute(sql)
            note = description(sql).replace("'", "''")
            for view in created_views(sql):
                con.execute(f"COMMENT ON VIEW {view} IS '{note}'")
                created.append(view)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"view file {path.relative_to(folder).as_posix()} failed: {first}") from exc
    return created


def list_views(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every view and described table of the warehouse with its one-line description, in name order."""
    rows = con.execute(
        "SELECT view_name, 'view', coalesce(comment, '') FROM duckdb_views() "
        "WHERE NOT internal AND NOT temporary AND schema_name = 'main' "
        "AND database_name = current_database() "
        "UNION ALL SELECT table_name, 'table', comment FROM duckdb_tables() WHERE NOT temporary "
        "AND schema_name = 'main' AND database_name = current_database() AND comment IS NOT NULL "
        "ORDER BY 1"
    ).fetchall()
    return [{"view": name, "kind": kind, "description": text} for name, kind, text in rows]
