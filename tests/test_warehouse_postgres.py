"""A warehouse whose DuckLake catalog is a real PostgreSQL database (started by tests/pg_server.py):
the catalog for many writers. Two `run` processes commit into it at once and both runs end whole."""

from __future__ import annotations

import json

import pytest
from faults_helpers import PAIRS, TINY_HEADS, TINY_LAYERS, check_run, cli, two_runs_at_once, user_error
from pg_server import fresh_pg_database, pg_server  # noqa: F401 (fixtures)

import warehouse as wh

CONDITIONS = 7  # baseline + 6 thoughts x zero


@pytest.mark.slow
def test_two_writers_commit_concurrently_through_a_postgres_catalog(tmp_path, fresh_pg_database):  # noqa: F811
    db = tmp_path / "w"
    out = cli("init", "--catalog", f"postgres:{fresh_pg_database}", "--db", db)
    assert out.exit_code == 0, out.stderr
    identity = json.loads((db / "codi-warehouse.json").read_text())
    assert identity["catalog"] == {"kind": "postgres", "dsn": fresh_pg_database}
    assert not (db / "catalog.sqlite").exists()

    runs = two_runs_at_once(db, tmp_path)
    assert sorted(runs.values()) == [3, 4]
    for run_id, n in runs.items():
        check_run(db, run_id, n, CONDITIONS, CONDITIONS * TINY_LAYERS * TINY_HEADS * PAIRS)
    store = wh.open_warehouse(db, read_only=True)
    assert store.catalog.kind == "postgres" and store.damaged_files() == {}


def test_a_second_warehouse_cannot_take_a_used_postgres_catalog(tmp_path, fresh_pg_database):  # noqa: F811
    assert cli("init", "--catalog", f"postgres:{fresh_pg_database}", "--db", tmp_path / "a").exit_code == 0
    user_error(
        cli("init", "--catalog", f"postgres:{fresh_pg_database}", "--db", tmp_path / "b"),
        "already holds a warehouse",
    )
    assert not (tmp_path / "b").exists()
    user_error(cli("init", "--catalog", "postgres:", "--db", tmp_path / "c"), "postgres:<dsn>")
