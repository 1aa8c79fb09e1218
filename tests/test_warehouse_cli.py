"""The warehouse commands of cli.py: runs, query (read-only, four formats), views, bench warehouse."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import warehouse as wh
from cli import cli
from warehouse import commands, output
from warehouse.bench import sample_problem

SMALL = {"n_layers": 2, "n_heads": 2}


@pytest.fixture()
def db(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
    done = store.begin_run({"seed": 1}, model_name="gpt2-tiny", run_id="20260101-000000-aaaaaa")
    for i in (1, 2):
        store.append_problem(done, *sample_problem(i, **SMALL))
    store.finish_run(done)
    running = store.begin_run({"seed": 2}, model_name="gpt2-tiny", run_id="20260102-000000-bbbbbb")
    store.append_problem(running, *sample_problem(3, **SMALL))
    return str(store.path)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def fails_with(result, text):
    assert result.exit_code != 0
    assert text in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_query_formats(db, tmp_path):
    sql = "SELECT run_id, count(*) AS n FROM attention GROUP BY run_id ORDER BY run_id"
    table = invoke("query", sql, "--db", db)
    assert table.exit_code == 0 and "20260101-000000-aaaaaa" in table.stdout
    rows = list(csv.DictReader(io.StringIO(invoke("query", sql, "--format", "csv", "--db", db).stdout)))
    assert [(r["run_id"], int(r["n"])) for r in rows] == [
        ("20260101-000000-aaaaaa", 12040),
        ("20260102-000000-bbbbbb", 6020),
    ]
    as_json = json.loads(invoke("query", sql, "--format", "json", "--db", db).stdout)
    assert as_json[1] == {"run_id": "20260102-000000-bbbbbb", "n": 6020}
    out = tmp_path / "out.parquet"
    saved = invoke("query", "SELECT * FROM results", "--format", "parquet", "--out", out, "--db", db)
    assert saved.exit_code == 0 and pq.read_metadata(out).num_rows == 3 * 43
    (tmp_path / "q.sql").write_text("SELECT name FROM positions WHERE code = 6;")
    assert invoke("query", "--file", tmp_path / "q.sql", "--format", "csv", "--db", db).stdout.split() == [
        "name",
        "EOT",
    ]


def test_query_refuses_writes_and_reports_errors_in_one_line(db, tmp_path):
    fails_with(invoke("query", "DELETE FROM runs", "--db", db), "read-only: DELETE")
    fails_with(invoke("query", "SELECT 1; DROP VIEW results", "--db", db), "read-only: DROP")
    fails_with(invoke("query", "COPY runs TO 'x.csv'", "--db", db), "read-only: COPY")
    fails_with(invoke("query", "CREATE TABLE x AS SELECT 1", "--db", db), "read-only: CREATE")
    fails_with(invoke("query", "SELEC 1", "--db", db), "syntax error")
    fails_with(invoke("query", "SELECT * FROM nowhere", "--db", db), "nowhere")
    fails_with(invoke("query", "SELECT 1", "--db", tmp_path / "none"), "no warehouse")
    fails_with(invoke("query", "SELECT 1", "--format", "parquet", "--db", db), "--out")
    assert invoke("query", "SELECT count(*) FROM runs", "--format", "csv", "--db", db).stdout.split() == [
        "count_star()",
        "2",
    ]


def test_runs_list_show_delete(db):
    listed = json.loads(invoke("runs", "--db", db, "--json").stdout)["runs"]
    assert [(r["run_id"], r["status"], r["problems_committed"]) for r in listed] == [
        ("20260101-000000-aaaaaa", "complete", 2),
        ("20260102-000000-bbbbbb", "running", 1),
    ]
    assert "20260102-000000-bbbbbb" in invoke("runs", "list", "--db", db).stdout
    shown = json.loads(invoke("runs", "show", "latest", "--db", db, "--json").stdout)
    assert shown["run_id"] == "20260102-000000-bbbbbb" and shown["rows"]["attention"] == 6020
    assert "config_hash" in invoke("runs", "--db", db, "show", "20260101").stdout
    fails_with(invoke("runs", "show", "nope", "--db", db), "no run matches 'nope'")
    fails_with(invoke("runs", "delete", "2026", "--yes", "--db", db), "ambiguous")
    deleted = invoke("runs", "delete", "20260101", "--yes", "--db", db)
    assert deleted.exit_code == 0 and "deleted run 20260101-000000-aaaaaa" in deleted.stdout
    assert (
        invoke("query", "SELECT count(*) FROM results", "--format", "csv", "--db", db).stdout.split()[1]
        == "43"
    )


def test_commands_return_values_the_cli_formats(db):
    runs = commands.runs_list(db)
    assert [(r["run_id"], r["problems_committed"]) for r in runs] == [
        ("20260101-000000-aaaaaa", 2),
        ("20260102-000000-bbbbbb", 1),
    ]
    assert output.format_runs(runs) == invoke("runs", "--db", db).stdout
    assert output.format_runs([]) == "no runs yet\n"
    run = commands.runs_show(db, "20260101")
    assert run["run_id"] == "20260101-000000-aaaaaa" and run["rows"]["results"] == 2 * 43
    assert output.format_run(run) == invoke("runs", "show", "20260101", "--db", db).stdout
    views = commands.views_list(db)
    assert output.format_views(views) == invoke("views", "--db", db).stdout


def test_views_lists_descriptions(db):
    listed = json.loads(invoke("views", "--db", db, "--json").stdout)["views"]
    names = {v["view"]: v["description"] for v in listed}
    assert {"results", "attention", "run_problems", "problems", "token_importance"} <= set(names)
    kinds = {v["view"]: v["kind"] for v in listed}
    assert kinds["results"] == "table" and kinds["problems"] == kinds["token_importance"] == "view"
    assert all(names[n] for n in ("results", "attention"))
    assert "attention" in invoke("views", "--db", db).stdout


def test_bench_warehouse_json(tmp_path):
    result = invoke("bench", "warehouse", "--problems", 2, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["attention_rows_per_problem"] == 43 * 12 * 12 * 35
    assert report["engine"].startswith("DuckLake") and report["disk_bytes"] > 0
    for key in ("problem_transactions", "chunk_transactions", "run_batch", "scan_attention"):
        assert report[key]["rows"] > 0 and report[key]["rows_per_s"] > 0
