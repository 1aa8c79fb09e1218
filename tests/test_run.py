"""`run` end to end on the bundled model: rows land in the warehouse, an interrupted run resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

import engine.runs.local as run_module
from engine.runs.config import RunConfig
from engine.runs.local import execute_run
from engine.runs.plan import select_problems
from warehouse.lake import extension_file
from warehouse.vocab import stratum_of

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

REPO = run_module.__file__.rsplit("/engine/", 1)[0]


def small_request(**kw) -> RunConfig:
    return RunConfig(problems=4, methods="zero,random", attention="baseline", batch_size=2, **kw)


def counts(db: str, run_id: str) -> dict:
    from warehouse.store import open_warehouse

    with open_warehouse(db, read_only=True).reader() as con:
        res = con.execute(
            "SELECT count(*), count(DISTINCT problem_id), count(DISTINCT (problem_id, condition_id)) "
            "FROM results WHERE run_id = ?",
            [run_id],
        ).fetchone()
        att = con.execute("SELECT count(*) FROM attention WHERE run_id = ?", [run_id]).fetchone()[0]
        status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
    return {"results": res[0], "problems": res[1], "distinct": res[2], "attention": att, "status": status}


def test_default_problem_set_is_stratified():
    problems = select_problems(RunConfig())
    assert len(problems) == 100
    strata = [stratum_of(p.n_steps) for p in problems]
    assert {s: strata.count(s) for s in set(strata)} == {"<=2": 25, "3": 25, "4": 25, "5+": 25}


def test_run_streams_rows_and_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    db = str(tmp_path / "w")
    real_chunk = run_module.run_chunk
    calls = {"n": 0}

    def failing_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # call 1: donor pool baselines, 2: first chunk, 3: second chunk
            raise RuntimeError("simulated crash in the middle of a run")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_chunk", failing_second_chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        execute_run(small_request(), db, progress=False)
    from warehouse.store import open_warehouse

    run_id = open_warehouse(db).resolve_run("latest")
    partial = counts(db, run_id)
    assert partial["status"] == "failed" and partial["problems"] == 2

    monkeypatch.setattr(run_module, "run_chunk", real_chunk)
    summary = execute_run(small_request(resume=run_id), db, progress=False)
    assert summary["run_id"] == run_id
    final = counts(db, run_id)
    conditions = 1 + 6 * 2  # baseline + 6 thoughts x (zero, random)
    assert final == {
        "results": 4 * conditions,
        "problems": 4,
        "distinct": 4 * conditions,
        "attention": 4 * 6 * 8 * 42,
        "status": "complete",
    }


def test_resume_with_other_flags_is_refused(tmp_path):
    db = str(tmp_path / "w")
    summary = execute_run(small_request(), db, progress=False)
    with pytest.raises(ValueError, match="--methods zero differs from the run's zero,random"):
        execute_run(
            RunConfig(problems=4, methods="zero", attention="baseline", resume=summary["run_id"]),
            db,
            progress=False,
        )


def test_cli_run_json_and_a_plain_duckdb_reader(tmp_path):
    db = tmp_path / "w"
    out = subprocess.run(
        [
            sys.executable,
            "cli.py",
            "run",
            "--problems",
            "2",
            "--methods",
            "zero",
            "--attention",
            "none",
            "--db",
            str(db),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "complete" and summary["conditions"] == 7 and summary["problems"] == 2
    assert 0.0 <= summary["baseline_accuracy"] <= 1.0
    assert [row["thought"] for row in summary["importance"]] == [f"T{k}" for k in range(6)]
    con = (
        duckdb.connect()
    )  # a plain reader: the documented two lines (extensions loaded from their files, offline)
    for name in ("ducklake", "sqlite"):
        con.execute(f"LOAD '{extension_file(name)}'")
    con.execute(
        f"ATTACH 'ducklake:sqlite:{db}/catalog.sqlite' AS wh (DATA_PATH '{db}/data/', "
        "OVERRIDE_DATA_PATH true, READ_ONLY)"
    )
    con.execute("USE wh")
    assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 2 * 7


def test_cli_run_reports_bad_flags_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "cli.py", "run", "--problems", "2", "--layer", "99", "--db", str(tmp_path / "w")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode != 0
    assert "--layer 99 is outside" in out.stderr and "Traceback" not in out.stderr


def test_run_experiment_returns_the_run(tmp_path):
    """The library entry point runs as `run` does and hands back the run, from a folder or an open
    warehouse."""
    from engine import Execution, run_experiment
    from warehouse.store import open_warehouse

    config = RunConfig(problems=2, methods="zero", attention="none", batch_size=2)
    run = run_experiment(config, tmp_path / "w")
    assert run.status == "complete" and run.results().height == 2 * 7
    with open_warehouse(tmp_path / "w", read_only=True) as wh:
        again = run_experiment(
            RunConfig(problems=2, methods="clean", attention="none"), wh, execution=Execution()
        )
        assert again.run_id != run.run_id and again.warehouse is wh and again.status == "complete"
    with pytest.raises(TypeError):
        RunConfig("gpt2-tiny")  # keyword-only: 17 fields are not read by position
    with pytest.raises(TypeError):
        Execution("ray")
