"""Run labels (issue 16 item 6), through the CLI and the API: `run --name/--tag/--note`, `runs tag`,
`runs note`, `runs rename`; stored in the warehouse (schema 4), never part of the config; shown by
`runs list/show`, found by `runs list --tag`, readable in SQL; `runs list` fits 100 columns; `runs show`
for every kind of run; `runs delete` asks on a terminal and wants --yes otherwise."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults_helpers import cli, fetch, user_error

import warehouse as wh
from warehouse import output, schema
from warehouse.bench import sample_problem

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_layers": 2, "n_heads": 2}
FAST = ["--problems", 4, "--methods", "zero,gauss", "--sigmas", "1.0", "--attention", "none"]


def labels_of(db, run_id):
    ((name, tags, note),) = fetch(db, "SELECT name, tags, note FROM runs WHERE run_id = ?", [run_id])
    return name, (json.loads(tags) if tags else None), note


# --- the API --------------------------------------------------------------------------------------------
def test_labels_are_stored_merged_removed_and_never_change_the_config(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
    a = store.begin_run({"seed": 1}, run_id="a", name=" baseline ", tags={"lr": 0.1, "team": "x"}, note="n")
    b = store.begin_run({"seed": 1}, run_id="b")
    assert labels_of(store.path, a) == ("baseline", {"lr": "0.1", "team": "x"}, "n")  # trimmed, strings
    assert labels_of(store.path, b) == (None, None, None)
    config_hashes = fetch(store.path, "SELECT DISTINCT config_hash FROM runs")
    assert len(config_hashes) == 1  # the labels are not config

    after = store.annotate_run("baseline", tags={"lr": "0.2", "seed": "7"}, untag=["team"])
    assert after == {"run_id": "a", "name": "baseline", "tags": {"lr": "0.2", "seed": "7"}, "note": "n"}
    after = store.annotate_run("a", name=None, note="two\nlines")
    assert (after["name"], after["note"]) == (None, "two\nlines")
    with pytest.raises(wh.WarehouseError, match="has no tag team; its tags: lr=0.2 seed=7"):
        store.annotate_run("a", untag=["team"])
    assert labels_of(store.path, a) == (None, {"lr": "0.2", "seed": "7"}, "two\nlines")  # unchanged by that

    for bad, match in [
        ({"name": ""}, "cannot be blank"),
        ({"name": "x" * 101}, "at most 100"),
        ({"tags": {"a b": "1"}}, "tag key 'a b'"),
        ({"tags": {"k": "two\nlines"}}, "one line"),
    ]:
        with pytest.raises(wh.WarehouseError, match=match):
            store.begin_run({}, run_id="bad", **bad)
        with pytest.raises(wh.WarehouseError, match=match):
            store.annotate_run("b", **bad)
    assert fetch(store.path, "SELECT count(*) FROM runs")[0][0] == 2  # nothing half-made


def test_a_name_resolves_like_an_id_when_one_run_has_it(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
    store.begin_run({}, run_id="20260101-000000-aaaaaa", name="lr sweep")
    store.begin_run({}, run_id="20260102-000000-bbbbbb", name="lr sweep")
    store.begin_run({}, run_id="20260103-000000-cccccc", name="20260101")  # a name that is an id prefix
    with pytest.raises(wh.UnknownRun, match="2 runs are named 'lr sweep'"):
        store.resolve_run("lr sweep")
    assert store.resolve_run("20260101") == "20260103-000000-cccccc"  # an exact name before a prefix
    assert store.resolve_run("20260102") == "20260102-000000-bbbbbb"
    assert store.resolve_run("20260101-000000-aaaaaa") == "20260101-000000-aaaaaa"  # an exact id first
    store.annotate_run("20260102-000000-bbbbbb", name="lr sweep 2")
    assert store.run("lr sweep").run_id == "20260101-000000-aaaaaa"


def test_runs_filter_by_tags_in_sql(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
    store.begin_run({}, run_id="a", tags={"lr": "0.1", "team": "x"})
    store.begin_run({}, run_id="b", tags={"lr": "0.2", "team": "x"})
    store.begin_run({}, run_id="c")
    ids = [[r["run_id"] for r in store.list_runs(t)] for t in ({"team": "x"}, {"lr": "0.2", "team": "x"}, {})]
    assert ids == [["a", "b"], ["b"], ["a", "b", "c"]]
    assert store.list_runs({"lr": "0.3"}) == []
    assert store.runs({"lr": "0.1"})["run_id"].to_list() == ["a"]
    assert store.sql("SELECT run_id FROM runs WHERE tags->>'lr' = '0.2'")["run_id"].to_list() == ["b"]
    assert store.sql("SELECT run_id, name, tags, note FROM stg_runs ORDER BY run_id").height == 3


def test_a_version_3_lake_gets_the_label_columns(tmp_path):
    path = tmp_path / "w"
    store = wh.open_warehouse(path)
    run = store.begin_run({}, run_id="old")
    store.append_problem(run, *sample_problem(1, **SMALL))
    store.finish_run(run)
    with store.cursor() as con:  # back to version 3 (without the columns of 4, and of 5)
        for column in ("name", "tags", "note", "threads", "wait_policy"):
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        for column in ("family", "site", "head", "thoughts", "parts"):  # and the results columns of 6
            con.execute(f"ALTER TABLE results DROP COLUMN {column}")
        for table in (*schema.READOUT_TABLES, "probe_results"):  # and the tables of 7
            con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (3, now()::TIMESTAMP, 'created')")
        con.execute("UPDATE warehouse_info SET views_hash = NULL")
    store.close()
    store = wh.open_warehouse(path)
    assert store.schema_version() == 7
    assert labels_of(path, "old") == (None, None, None)
    store.annotate_run("old", tags={"k": "v"}, name="migrated")  # a complete run can still be labelled
    assert labels_of(path, "old") == ("migrated", {"k": "v"}, None)
    assert fetch(path, "SELECT count(*) FROM results WHERE run_id = 'old'") == [(43,)]


# --- the text forms ---------------------------------------------------------------------------------------
def test_runs_list_fits_100_columns_and_cuts_only_what_does_not_fit():
    now = dt.datetime(2026, 11, 30, 15, 0)
    run = {
        "run_id": "20261130-124803-4eaebe",
        "name": "baseline",
        "status": "interrupted",
        "model_name": "gpt2-tiny",
        "n_problems_planned": 400,
        "problems_committed": 52,
        "patch_layers": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        "methods": ["zero", "gauss", "random", "shuffle"],
        "sigmas": [0.1, 0.5, 1.0, 2.0],
        "seed": 0,
        "started_at": dt.datetime(2026, 11, 30, 12, 48, 3, 123456),
        "seconds": 3725.5,
    }
    text = output.format_runs([run], now=now)
    assert text.splitlines() == [  # 107 columns with two spaces between columns: one space, nothing cut
        "id                     name     status      model     done   layers methods seed started     took",
        "20261130-124803-4eaebe baseline interrupted gpt2-tiny 52/400 0-11   default 0    11-30 12:48 1h02m",
    ]
    narrow = output.format_runs([{**run, "name": None, "status": "complete", "patch_layers": [6]}], now=now)
    assert narrow.splitlines()[1] == (  # 97 columns: two spaces
        "20261130-124803-4eaebe        complete  gpt2-tiny  52/400  6       default  0     11-30 12:48  1h02m"
    )
    long = {
        **run,
        "name": "a rather long name for a run, as people write them",
        "methods": ["zero", "mean", "clean"],
        "patch_layers": [3, 6, 9],
        "started_at": dt.datetime(2025, 1, 2, 3, 4),
        "seconds": 75,
    }
    lines = output.format_runs([run, long], now=now).splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[2].split()[:2] == ["20261130-124803-4eaebe", "a"]
    assert "\u2026" in lines[2] and "2025-01-02" in lines[2] and "1m15s" in lines[2] and "3,6,9" in lines[2]
    twins = [{**run, "name": f"lr sweep, default seed {k}", "patch_layers": [6]} for k in (0, 1)]
    names = [line[23:33] for line in output.format_runs(twins, now=now).splitlines()[1:]]
    assert names == ["lr s\u2026eed 0", "lr s\u2026eed 1"]  # cut in the middle: the names still differ
    assert "123456" not in "".join(lines) and "float" not in "".join(lines)


# --- through the CLI, on real runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("labels") / "w")
    first = cli("run", *FAST, "--name", "first try", "--tag", "lr=0.1", "--tag", "team=interp",
                "--note", "checking labels", "--db", db)  # fmt: skip
    assert first.exit_code == 0, first.stderr
    second = cli("run", *FAST, "--seed", 1, "--tag", "lr=0.2", "--db", db)
    assert second.exit_code == 0, second.stderr
    return db, [r[0] for r in fetch(db, "SELECT run_id FROM runs ORDER BY run_seq")]


def test_run_labels_show_in_list_show_json_and_sql(labelled):
    db, (a, b) = labelled
    assert labels_of(db, a) == ("first try", {"lr": "0.1", "team": "interp"}, "checking labels")
    listed = cli("runs", "--db", db).stdout.splitlines()
    assert listed[0].split() == ["id", "name", "status", "model", "done", "layers", "methods", "seed",
                                 "started", "took"]  # fmt: skip
    assert listed[1].startswith(a) and "first try" in listed[1] and "4/4" in listed[1]
    assert listed[2].split()[1:4] == ["complete", "gpt2-tiny", "4/4"]  # no name: the cell is blank
    assert max(map(len, listed)) <= 100
    full = json.loads(cli("runs", "list", "--json", "--db", db).stdout)["runs"]
    assert full[0]["tags"] == {"lr": "0.1", "team": "interp"} and full[0]["note"] == "checking labels"
    assert full[1]["seed"] == 1 and full[1]["methods"] == ["zero", "gauss"] and full[1]["seconds"] > 0
    only = cli("runs", "list", "--tag", "team=interp", "--db", db).stdout.splitlines()
    assert len(only) == 2 and only[1].startswith(a)
    assert cli("runs", "list", "--tag", "lr=9", "--db", db).stdout == "no run is tagged lr=9\n"
    shown = cli("runs", "show", "first try", "--db", db).stdout
    for line in ("name                first try", "tags                lr=0.1 team=interp",
                 "note                checking labels", "kind                engine run (python cli.py run)",
                 "problems            4"):  # fmt: skip
        assert line in shown, line
    assert re.search(r"\nstarted_at +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", shown), shown
    sql = cli(
        "query", "SELECT run_id FROM runs WHERE tags->>'team' = 'interp'", "--format", "csv", "--db", db
    )
    assert sql.stdout.split() == ["run_id", a]
    assert cli("stats", "--run", "first try", "--json", "--db", db).exit_code == 0  # a name where an id goes


def test_runs_tag_note_rename_change_the_warehouse(labelled):
    db, (a, b) = labelled
    out = cli("runs", "tag", b, "lr=0.3", "extra=x", "--db", db)
    assert out.exit_code == 0 and "tags  extra=x lr=0.3" in out.stdout
    out = cli("runs", "tag", b, "--remove", "extra", "--json", "--db", db)
    assert json.loads(out.stdout) == {"run_id": b, "name": None, "tags": {"lr": "0.3"}, "note": None}
    user_error(cli("runs", "tag", b, "--remove", "nope", "--db", db), "has no tag nope")
    user_error(cli("runs", "tag", b, "novalue", "--db", db), "write key=value")
    user_error(cli("runs", "tag", b, "--db", db), "give KEY=VALUE")
    assert cli("runs", "rename", b, "seed one", "--db", db).exit_code == 0
    assert cli("runs", "note", "seed one", "differs from the first in --seed only", "--db", db).exit_code == 0
    assert labels_of(db, b) == ("seed one", {"lr": "0.3"}, "differs from the first in --seed only")
    user_error(cli("runs", "note", b, "--db", db), "TEXT, or --clear")
    assert cli("runs", "note", b, "--clear", "--db", db).exit_code == 0
    assert cli("runs", "rename", "seed one", "--clear", "--db", db).exit_code == 0
    assert labels_of(db, b) == (None, {"lr": "0.3"}, None)
    user_error(cli("run", *FAST, "--tag", "bad key=1", "--db", db), "--tag", "tag key 'bad key'")
    assert len(fetch(db, "SELECT run_id FROM runs")) == 2  # refused before a run began


def test_labels_given_beside_resume_are_added(tmp_path, monkeypatch):
    from test_run_flags import interrupted_run

    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, name="crashy", tags={"a": "1"})
    out = cli("run", "--resume", "crashy", "--tag", "b=2", "--note", "resumed once", "--db", db)
    assert out.exit_code == 0, out.stderr
    assert labels_of(db, run_id) == ("crashy", {"a": "1", "b": "2"}, "resumed once")
    assert f"run {run_id}: 2 problems (2 kept from before) x 13 conditions in" in out.stdout


def test_runs_show_makes_sense_for_a_legacy_run_and_a_running_one(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
    legacy = store.begin_run({"legacy_format": "ccta"}, run_id="old-results", convention="legacy")
    store.append_problem(legacy, *sample_problem(1, **SMALL))
    running = store.begin_run({"methods": ["zero"], "layers": [3], "seed": 0}, run_id="live")
    shown = cli("runs", "show", "old-results", "--db", store.path).stdout
    assert "kind                imported result file of the research scripts (ingest legacy)" in shown
    assert "problems            1" in shown
    shown = json.loads(cli("runs", "show", running, "--json", "--db", store.path).stdout)
    assert (shown["kind"], shown["status"], shown["problems"], shown["tags"]) == ("engine", "running", 0, {})


def _terminal_delete(db, run_id, answer: bytes) -> tuple[int, str]:
    """`runs delete RUN` on a real pseudo-terminal, answering the question with `answer`."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100"}
    child = subprocess.Popen(
        [sys.executable, "cli.py", "runs", "delete", run_id, "--db", str(db)],
        cwd=ROOT, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        if select.select([leader], [], [], 1)[0]:
            seen += os.read(leader, 4096)
    os.write(leader, answer + b"\n")
    child.wait(timeout=60)
    while select.select([leader], [], [], 0.2)[0]:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return child.returncode, seen.decode(errors="replace")


@pytest.mark.slow  # two CLI processes on a terminal
def test_runs_delete_asks_on_a_terminal_and_wants_yes_otherwise(tmp_path):
    store = wh.open_warehouse(tmp_path / "w")
    run_id = store.begin_run({}, run_id="doomed", name="old try")
    store.append_problem(run_id, *sample_problem(1, **SMALL))
    store.finish_run(run_id)
    store.close()
    user_error(
        cli("runs", "delete", "doomed", "--db", store.path), "add --yes to confirm", "nothing was deleted"
    )
    code, text = _terminal_delete(store.path, "doomed", b"n")
    assert code == 0 and "delete run doomed (old try): complete, 1 problem, 43 results" in text, text
    assert "nothing deleted" in text and fetch(store.path, "SELECT count(*) FROM results") == [(43,)]
    code, text = _terminal_delete(store.path, "doomed", b"y")
    assert code == 0 and "deleted run doomed" in text, text
    assert fetch(store.path, "SELECT count(*) FROM runs") == [(0,)]


def test_labels_of_a_sharded_run_travel_in_its_manifests(tmp_path):
    """`run --shard I/N --name --tag --note`: each worker's manifest records the labels, `ingest shards`
    gives them to the merged run."""
    db = tmp_path / "w"
    for shard in ("0/2", "1/2"):
        out = cli("run", *FAST, "--shard", shard, "--run-id", "array-7", "--name", "array",
                  "--tag", "cluster=slurm", "--note", "two workers", "--db", db)  # fmt: skip
        assert out.exit_code == 0, out.stderr
    manifest = json.loads((tmp_path / "w.worker-shards/array-7/shard-0000-of-0002/manifest.json").read_text())
    assert {k: manifest["fields"][k] for k in ("name", "tags", "note")} == {
        "name": "array",
        "tags": {"cluster": "slurm"},
        "note": "two workers",
    }
    assert cli("ingest", "shards", tmp_path / "w.worker-shards/array-7", "--db", db).exit_code == 0
    assert labels_of(db, "array-7") == ("array", {"cluster": "slurm"}, "two workers")
