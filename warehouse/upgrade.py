"""`python cli.py upgrade OLD.duckdb --to FOLDER`: a warehouse of the old layout, copied into a new one.

The old layout (schema version 1) was a DuckDB file holding runs, problems_base and positions, plus
Parquet batch directories under `OLD.shards/<run_id>/<batch>/`. Every run is copied with its
lineage, status and rows, one transaction per run; the old files are only read, never changed.
A batch directory that cannot be read is reported with its path, and nothing of that run is copied.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import lake, schema
from warehouse.errors import WarehouseError
from warehouse.frames import conform
from warehouse.store import open_warehouse


def _old_rows(path: Path) -> tuple[list[dict], pa.Table]:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseError(
            f"{path} cannot be opened as an old warehouse file ({str(exc).splitlines()[0]})"
        ) from None
    try:
        version = con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0]
        if version != 1:
            raise WarehouseError(f"{path} has schema version {version}; upgrade reads version 1 files only")
        runs = con.sql("SELECT * FROM runs ORDER BY started_at, run_id").pl().to_dicts()
        problems = con.sql("SELECT * FROM problems_base").to_arrow_table()
    except duckdb.CatalogException:
        raise WarehouseError(f"{path} is a DuckDB file but not an old codi warehouse") from None
    finally:
        con.close()
    return runs, problems


def _run_tables(shards: Path, run_id: str) -> dict[str, pa.Table]:
    out = {}
    for table in schema.SHARD_TABLES:
        files = sorted((shards / run_id).glob(f"*/{table}.parquet"))
        parts = []
        for f in files:
            try:
                parts.append(pq.read_table(f))
            except (OSError, pa.ArrowException) as exc:
                raise WarehouseError(
                    f"run {run_id}: {f} is unreadable ({exc}); restore it, or delete the run "
                    "in the old warehouse, then upgrade again"
                ) from None
        out[table] = pa.concat_tables(parts, promote_options="permissive") if parts else None
    return out


def upgrade(old: str | os.PathLike, target: str | os.PathLike) -> dict:
    """Copy every run, problem and row of the old warehouse file `old` into the new folder `target`."""
    old = Path(old)
    if lake.inspect(Path(target)) != "new":
        raise WarehouseError(f"{target} already exists; give a new folder to upgrade into")
    shards = old.with_suffix(".shards") if old.suffix else old.with_name(old.name + ".shards")
    runs, problems = _old_rows(old)
    store = open_warehouse(target)
    copied = {"runs": 0, "results": 0, "attention": 0, "problems": store.upsert_problems(problems)}
    lineage = set(schema.column_names("runs"))
    for run in runs:
        tables = _run_tables(shards, run["run_id"])
        rows = {k: v for k, v in run.items() if k in lineage}
        rows["run_seq"] = copied["runs"] + 1  # the old runs in the order they began

        def copy(con, rows=rows, tables=tables):
            names = list(rows)
            con.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [rows[n] for n in names],
            )
            for name in schema.FACT_TABLES:
                if tables[name] is not None and tables[name].num_rows:
                    con.register(f"old_{name}", conform(tables[name], name, rows["run_id"]))
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM old_{name}")

        if tables["problems"] is not None:  # problems are shared by runs: added first, as ingest adds them
            copied["problems"] += store.upsert_problems(tables["problems"])
        store._transact(copy, f"copying run {run['run_id']}")
        copied["runs"] += 1
        for name in ("results", "attention"):
            copied[name] += tables[name].num_rows if tables[name] is not None else 0
    store.close()
    return copied
