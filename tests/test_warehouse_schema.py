"""Schema versioning and migrations, the SQLAlchemy engine, and the queries/*.sql views hook."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pyarrow as pa
import pytest

import warehouse as wh
from warehouse import migrate, schema, views
from warehouse.bench import sample_problem

SMALL = {"n_layers": 2, "n_heads": 2}


def fetch(store, sql, params=None):
    with store.reader() as con:
        return con.execute(sql, params or []).fetchall()


def test_created_at_current_version_with_tables_and_positions(tmp_path):
    store = wh.open_warehouse(tmp_path / "new" / "w.duckdb")
    assert store.schema_version() == schema.SCHEMA_VERSION
    assert fetch(store, "SELECT code, name FROM positions ORDER BY code") == [
        (-2, "Q"), (-1, "BOT"), (0, "T0"), (1, "T1"), (2, "T2"), (3, "T3"), (4, "T4"), (5, "T5"), (6, "EOT")]
    for table in ("runs", "results", "attention", "run_problems", "problems"):
        columns = [r[0] for r in fetch(store, f"SELECT column_name FROM (DESCRIBE {table})")]
        assert columns == schema.column_names(table), table
    wh.open_warehouse(store.path)  # reopening changes nothing
    assert fetch(store, "SELECT count(*) FROM schema_version") == [(1,)]


def test_forward_migration_runs_once_and_newer_files_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "w.duckdb"
    wh.open_warehouse(path)
    calls = []

    def add_host(con):
        calls.append(1)
        con.execute("ALTER TABLE runs ADD COLUMN host TEXT")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(migrate.MIGRATIONS, 2, add_host)
    store = wh.open_warehouse(path, read_only=True)  # an old file is migrated forward on first open
    wh.open_warehouse(path)
    assert calls == [1]
    assert fetch(store, "SELECT max(version) FROM schema_version") == [(2,)]
    assert "host" in [r[0] for r in fetch(store, "SELECT column_name FROM (DESCRIBE runs)")]
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    with pytest.raises(migrate.SchemaError, match="newer"):
        wh.open_warehouse(path)


def test_attention_rows_are_narrow():
    types = dict(zip(schema.arrow_schema("attention").names, schema.arrow_schema("attention").types))
    assert all(types[c] == pa.int16() for c in ("condition_id", "layer", "head", "dst", "src"))
    assert types["weight"] == pa.float32()
    assert pa.types.is_dictionary(types["run_id"]) and pa.types.is_dictionary(types["problem_id"])


def test_sqlalchemy_engine_reads_the_views(tmp_path):
    store = wh.open_warehouse(tmp_path / "w.duckdb")
    run = store.begin_run({"seed": 0}, model_name="gpt2-tiny")
    store.append_problem(run, *sample_problem(1, **SMALL))
    # In a child process: duckdb-engine imported next to torch (this suite's conftest) makes DuckDB's
    # bindings print leak reports at interpreter exit.
    script = f"""
import sqlalchemy as sa
import warehouse as wh
from warehouse import schema
engine = wh.engine({str(store.path)!r})
assert engine.url.drivername == "duckdb" and engine.dialect.name == "duckdb"
with engine.connect() as con:
    print(con.execute(sa.select(sa.func.count()).select_from(schema.results)).scalar())
    print(con.execute(sa.text("SELECT model_name FROM runs")).scalar())
print("runs" in sa.inspect(engine).get_table_names())
"""
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["43", "gpt2-tiny", "True"]
    store.finish_run(run)  # nothing of the engine holds the lock after use


def test_query_views_are_applied_in_order_and_described(tmp_path):
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "20_int_weights.sql").write_text(
        "-- Mean attention weight per run and layer.\n"
        "CREATE OR REPLACE VIEW int_weights AS SELECT run_id, layer, avg(weight) AS w FROM stg_attention GROUP BY ALL;\n")
    (folder / "10_stg_attention.sql").write_text(
        "-- Attention rows of complete and running runs.\nCREATE OR REPLACE VIEW stg_attention AS SELECT * FROM attention;\n")
    store = wh.Warehouse(tmp_path / "w.duckdb")
    store.initialize(folder)
    run = store.begin_run({})
    store.append_problem(run, *sample_problem(1, **SMALL))
    listed = {v["view"]: v["description"] for v in fetch_views(store)}
    assert listed["int_weights"] == "Mean attention weight per run and layer."
    assert listed["stg_attention"] == "Attention rows of complete and running runs."
    assert listed["results"].startswith("One row per run")
    assert fetch(store, "SELECT count(*) FROM int_weights") == [(2,)]  # sees a running run's shards
    (folder / "30_broken.sql").write_text("CREATE VIEW broken AS SELEC 1;\n")
    with pytest.raises(ValueError, match="30_broken.sql"):
        store.initialize(folder)
    assert views.description("--no space\n-- Second line.\n") == "Second line."


def fetch_views(store):
    with store.reader() as con:
        return views.list_views(con)


def test_moved_warehouse_reads_its_own_shards(tmp_path):
    store = wh.open_warehouse(tmp_path / "a" / "w.duckdb")
    run = store.begin_run({})
    store.append_problem(run, *sample_problem(1, **SMALL))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    moved = wh.Warehouse(tmp_path / "b" / "w.duckdb")
    assert fetch(moved, "SELECT count(*) FROM attention") == [(6020,)]
    wh.open_warehouse(moved.path)  # opening for writing repoints the stored views
    with moved.reader() as con:
        sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'attention' AND NOT temporary").fetchall()
    assert str(tmp_path / "b") in sql[0][0]
