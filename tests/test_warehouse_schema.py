"""Schema versioning and migrations, the SQLAlchemy engine, the queries/*.sql views hook, moved folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import warehouse as wh
from warehouse import lake, migrate, schema, views
from warehouse.bench import sample_problem

SMALL = {"n_layers": 2, "n_heads": 2}


def fetch(store, sql, params=None):
    with store.reader() as con:
        return con.execute(sql, params or []).fetchall()


V6_RESULTS = ("family", "site", "head", "thoughts", "parts")  # the results columns of schema 6
V7_TABLES = (*schema.READOUT_TABLES, "probe_results")  # the tables of schema 7


def test_created_at_current_version_with_tables_and_positions(tmp_path):
    store = wh.open_warehouse(tmp_path / "new" / "w")
    v = schema.SCHEMA_VERSION
    assert v == 7 and store.schema_version() == v
    assert fetch(store, "SELECT version, note FROM schema_version") == [(v, "created")]
    assert fetch(store, "SELECT code, name FROM positions ORDER BY code") == [
        (-2, "Q"),
        (-1, "BOT"),
        (0, "T0"),
        (1, "T1"),
        (2, "T2"),
        (3, "T3"),
        (4, "T4"),
        (5, "T5"),
        (6, "EOT"),
    ]
    for table in ("runs", "results", "attention", "run_problems", "problems", *V7_TABLES):
        columns = [r[0] for r in fetch(store, f"SELECT column_name FROM (DESCRIBE {table})")]
        assert columns == schema.column_names(table), table
    wh.open_warehouse(store.path)  # reopening changes nothing
    wh.open_warehouse(store.path, read_only=True)
    assert fetch(store, "SELECT version, note FROM schema_version") == [(v, "created")]


def test_forward_migration_runs_once_and_newer_files_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "w"
    wh.open_warehouse(path).close()
    calls = []
    v = schema.SCHEMA_VERSION

    def add_host(con):
        calls.append(1)
        con.execute("ALTER TABLE runs ADD COLUMN host TEXT")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", v + 1)  # this program is one version ahead of the lake
    monkeypatch.setitem(migrate.MIGRATIONS, v + 1, add_host)
    store = wh.open_warehouse(path, read_only=True)  # an older lake is migrated forward on first open
    assert calls == [1]
    wh.open_warehouse(path)
    wh.open_warehouse(path, read_only=True)
    assert calls == [1]  # once
    assert fetch(store, "SELECT version, note FROM schema_version ORDER BY version") == [
        (v, "created"),
        (v + 1, f"migrated from {v}"),
    ]
    assert "host" in [r[0] for r in fetch(store, "SELECT column_name FROM (DESCRIBE runs)")]

    monkeypatch.setattr(schema, "SCHEMA_VERSION", v)  # the older program meets the migrated lake
    for read_only in (False, True):
        with pytest.raises(
            migrate.SchemaError, match=f"schema version {v + 1}, newer .*upgrade codi-warehouse"
        ):
            wh.open_warehouse(path, read_only=read_only)


def test_a_version_2_lake_gets_the_answer_measures_and_run_numbers(tmp_path):
    """Migration 3 on a lake laid out as version 2 left it: rows kept, js_answer / entropy_answer NULL for
    them, runs numbered by start time; `latest` then follows the numbers, not the clock."""
    path = tmp_path / "w"
    store = wh.open_warehouse(path)
    first = store.begin_run({}, run_id="first")
    store.append_problem(first, *sample_problem(1, **SMALL))
    store.finish_run(first)
    second = store.begin_run({}, run_id="second")
    store.finish_run(second)
    with store.cursor() as con:  # back to version 2: without the columns of 3, the second run begun first
        con.execute("ALTER TABLE results DROP COLUMN js_answer")
        con.execute("ALTER TABLE results DROP COLUMN entropy_answer")
        con.execute("ALTER TABLE runs DROP COLUMN run_seq")
        for column in ("name", "tags", "note", "threads", "wait_policy"):  # and those of 4 and 5
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        for column in V6_RESULTS:  # and 6
            con.execute(f"ALTER TABLE results DROP COLUMN {column}")
        for table in V7_TABLES:  # and 7
            con.execute(f"DROP TABLE {table}")
        con.execute("UPDATE runs SET started_at = started_at - INTERVAL 1 HOUR WHERE run_id = 'second'")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (2, now()::TIMESTAMP, 'created')")
        con.execute("UPDATE warehouse_info SET views_hash = NULL")
    store.close()

    store = wh.open_warehouse(path, read_only=True)
    assert store.schema_version() == 7
    assert fetch(store, "SELECT run_id, run_seq FROM runs ORDER BY run_seq") == [("second", 1), ("first", 2)]
    assert store.resolve_run("latest") == "first"
    assert fetch(store, "SELECT count(*), count(js_answer), count(entropy_answer) FROM results") == [
        (43, 0, 0)
    ]
    for table in ("runs", "results"):
        columns = [r[0] for r in fetch(store, f"SELECT column_name FROM (DESCRIBE {table})")]
        assert columns == schema.column_names(table), table
    third = wh.open_warehouse(path).begin_run({}, run_id="third")  # numbering goes on after the migrated runs
    assert fetch(store, "SELECT run_seq FROM runs WHERE run_id = ?", [third]) == [(3,)]
    with pytest.raises(wh.WarehouseError, match="reserved"):
        wh.open_warehouse(path).begin_run({}, run_id="latest")


def test_a_version_4_lake_gets_the_thread_columns(tmp_path):
    """Migration 5 on a lake as version 4 left it: rows kept, threads / wait_policy NULL for the runs before
    (not recorded then), recorded for the runs after."""
    path = tmp_path / "w"
    store = wh.open_warehouse(path)
    old = store.begin_run({"seed": 1}, run_id="old", name="before", dtype="float32")
    store.append_problem(old, *sample_problem(1, **SMALL))
    store.finish_run(old)
    with store.cursor() as con:  # back to version 4
        for column in ("threads", "wait_policy"):
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        for column in V6_RESULTS:
            con.execute(f"ALTER TABLE results DROP COLUMN {column}")
        for table in V7_TABLES:
            con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (4, now()::TIMESTAMP, 'created')")
        con.execute("UPDATE warehouse_info SET views_hash = NULL")
    store.close()

    store = wh.open_warehouse(path)
    assert store.schema_version() == 7
    assert fetch(store, "SELECT version, note FROM schema_version ORDER BY version") == [
        (4, "created"),
        (5, "migrated from 4"),
        (6, "migrated from 5"),
        (7, "migrated from 6"),
    ]
    columns = [r[0] for r in fetch(store, "SELECT column_name FROM (DESCRIBE runs)")]
    assert columns == schema.column_names("runs")
    assert fetch(store, "SELECT name, dtype, threads, wait_policy FROM runs") == [
        ("before", "float32", None, None)
    ]
    assert fetch(store, "SELECT count(*) FROM results WHERE run_id = 'old'") == [(43,)]
    new = store.begin_run({}, run_id="new", threads=3, wait_policy="passive")
    assert fetch(store, "SELECT threads, wait_policy FROM runs WHERE run_id = ?", [new]) == [(3, "passive")]
    assert wh.format_run(store.show_run("old")).count("threads") == 0  # not recorded: not shown


@pytest.mark.parametrize("read_only", [False, True])
def test_a_lake_from_a_newer_program_is_refused_and_left_alone(tmp_path, read_only):
    path = tmp_path / "w"
    store = wh.open_warehouse(path)
    run = store.begin_run({})
    store.append_problem(run, *sample_problem(1, **SMALL))
    store.finish_run(run)
    with store.cursor() as con:  # what a newer program's migration leaves
        con.execute("INSERT INTO schema_version VALUES (99, now()::TIMESTAMP, 'x')")
    store.close()
    catalog = (path / "catalog.sqlite").read_bytes()
    with pytest.raises(
        migrate.SchemaError,
        match=f"schema version 99, newer than this program's {schema.SCHEMA_VERSION}; upgrade codi-warehouse",
    ):
        wh.open_warehouse(path, read_only=read_only)
    with pytest.raises(migrate.SchemaError, match="upgrade codi-warehouse"):
        wh.engine(path)
    assert (path / "catalog.sqlite").read_bytes() == catalog  # nothing migrated, no view applied


def test_attention_rows_are_narrow():
    types = dict(
        zip(schema.arrow_schema("attention").names, schema.arrow_schema("attention").types, strict=True)
    )
    assert all(types[c] == pa.int16() for c in ("condition_id", "layer", "head", "dst", "src"))
    assert types["weight"] == pa.float32()
    assert pa.types.is_dictionary(types["run_id"]) and pa.types.is_dictionary(types["problem_id"])


def test_sqlalchemy_engine_reads_the_views(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
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
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["43", "gpt2-tiny", "True"]
    store.finish_run(run)  # nothing of the engine holds the lock after use


def test_query_views_are_applied_in_order_and_described(tmp_path, monkeypatch):
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "20_int_weights.sql").write_text(
        "-- Mean attention weight per run and layer.\n"
        "CREATE OR REPLACE VIEW int_weights AS SELECT run_id, layer, avg(weight) AS w FROM stg_attention "
        "GROUP BY ALL;\n"
    )
    (folder / "10_stg_attention.sql").write_text(
        "-- Attention rows of complete and running runs.\n"
        "CREATE OR REPLACE VIEW stg_attention AS SELECT * FROM attention;\n"
    )
    applied = []
    real_apply = migrate.apply_all_views
    monkeypatch.setattr(migrate, "apply_all_views", lambda *a: applied.append(a[1]) or real_apply(*a))
    store = wh.Warehouse(tmp_path / "w").open(folder)
    assert applied == [folder]
    first = migrate.views_hash(folder)
    assert fetch(store, "SELECT views_hash FROM warehouse_info") == [(first,)]
    run = store.begin_run({})
    store.append_problem(run, *sample_problem(1, **SMALL))
    listed = {v["view"]: (v["kind"], v["description"]) for v in fetch_views(store)}
    assert listed == {
        "int_weights": ("view", "Mean attention weight per run and layer."),
        "stg_attention": ("view", "Attention rows of complete and running runs."),
        "problems": ("view", migrate.FACT_COMMENTS["problems"]),
        # the fact relations are tables (COMMENT ON TABLE), listed with their descriptions
        **{fact: ("table", migrate.FACT_COMMENTS[fact]) for fact in (*schema.FACT_TABLES, "probe_results")},
    }
    assert listed["results"][1].startswith("One row per run")
    assert {
        r[0] for r in fetch(store, "SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh'")
    } >= {"results", "attention", "run_problems", "problems_base"}
    assert fetch(store, "SELECT count(*) FROM int_weights") == [(2,)]  # sees a running run's commits

    wh.Warehouse(store.path).open(folder).close()  # the files did not change: nothing is applied again
    wh.Warehouse(store.path, read_only=True).open(folder).close()
    assert applied == [folder]

    (folder / "30_broken.sql").write_text("-- Broken.\nCREATE VIEW broken AS SELEC 1;\n")
    with pytest.raises(ValueError, match="30_broken.sql"):
        wh.Warehouse(store.path).open(folder)
    assert fetch(store, "SELECT views_hash FROM warehouse_info") == [(first,)]  # all or nothing
    assert "broken" not in {v["view"] for v in fetch_views(store)}
    assert fetch(store, "SELECT count(*) FROM int_weights") == [(2,)]

    (folder / "30_broken.sql").write_text("-- Fixed.\nCREATE OR REPLACE VIEW fixed AS SELECT 1 AS one;\n")
    wh.Warehouse(store.path).open(folder).close()  # changed files: applied again
    assert len(applied) == 3
    assert (
        fetch(store, "SELECT views_hash FROM warehouse_info") == [(migrate.views_hash(folder),)] != [(first,)]
    )
    assert {v["view"]: v["description"] for v in fetch_views(store)}["fixed"] == "Fixed."
    assert views.description("--no space\n-- Second line.\n") == "Second line."


def fetch_views(store):
    with store.reader() as con:
        return views.list_views(con)


def test_a_copied_folder_works_from_another_directory_without_the_original(tmp_path, monkeypatch):
    store = wh.open_warehouse(tmp_path / "a" / "w")
    run = store.begin_run({})
    store.append_problem(run, *sample_problem(1, **SMALL))
    store.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    copy = Path("..") / "b" / "w"  # relative, from another working directory
    assert fetch(wh.open_warehouse(copy, read_only=True), "SELECT count(*) FROM attention") == [(6020,)]
    moved = wh.open_warehouse(copy)  # and it takes new commits where it now is
    assert moved.resume_run(run) == {sample_problem(1)[0]["problem_id"]}
    moved.append_problem(run, *sample_problem(2, **SMALL))
    moved.finish_run(run)
    assert fetch(moved, "SELECT count(*), count(DISTINCT problem_id) FROM attention") == [(2 * 6020, 2)]
    assert moved.damaged_files() == {}
    assert not (tmp_path / "a").exists()
    files = [Path(p) for _t, p, _s, _r in moved._data_files(None)]
    assert len(files) == 2 * 3
    assert all(p.resolve().is_relative_to(tmp_path / "b" / "w" / "data") and p.is_file() for p in files)
    with moved.cursor() as con:  # the catalog holds no absolute path: not the data path, no file, no view
        assert con.execute(
            f"SELECT value FROM {lake.METADATA}.ducklake_metadata WHERE key = 'data_path'"
        ).fetchall() == [("data/",)]
        assert con.execute(
            f"SELECT count(*) FROM {lake.METADATA}.ducklake_data_file WHERE NOT path_is_relative"
        ).fetchall() == [(0,)]
        assert con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE database_name = 'wh' AND contains(sql, ?)",
            [str(tmp_path)],
        ).fetchall() == [(0,)]


def test_a_read_only_open_applies_views_newer_than_the_stored_ones(tmp_path):
    """A checkout with new or changed views reads an existing warehouse without a writing command first:
    the read-only open applies this program's views once (the folder is writable), then reads them."""
    path = tmp_path / "w"
    store = wh.open_warehouse(path)
    store.begin_run({}, run_id="r")
    with store.cursor() as con:  # as a warehouse written before run_config_diff existed
        con.execute("DROP VIEW run_config_diff")
        con.execute("UPDATE warehouse_info SET views_hash = 'older'")
    store.close()
    store = wh.open_warehouse(path, read_only=True)
    assert store.sql("SELECT count(*) AS n FROM run_config_diff")["n"].to_list() == [0]  # one run: no pairs
    assert fetch(store, "SELECT views_hash FROM warehouse_info") != [("older",)]
