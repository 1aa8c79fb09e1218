"""SIGKILL of a real `run` process at several points, then `run --resume`: no duplicates, no gaps, and the
same answers as a run that was never interrupted.

The child is `python cli.py run ...` in its own process (tests/faults_helpers.py), stalled at the chosen
point and killed there with SIGKILL; resume runs in this process. The store-level kills (a writer killed
mid-problem and mid-finish) are tests/test_warehouse_kill.py.
"""
from __future__ import annotations

import math

import pytest
from faults_helpers import PAIRS, TINY_HEADS, TINY_LAYERS, Stall, check_run, cli, fetch, latest_run, spawn_cli

PROBLEMS, BATCH, CONDITIONS = 6, 2, 7  # 3 chunks; baseline + 6 thoughts x zero
FLAGS = ["--problems", PROBLEMS, "--batch-size", BATCH, "--methods", "zero", "--attention", "all"]
PER_PROBLEM = CONDITIONS * TINY_LAYERS * TINY_HEADS * PAIRS  # attention rows
ROWS = "SELECT problem_id, condition_id, answer_text, correct, kl_first, disruption FROM results ORDER BY 1, 2"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The rows of the same run, never interrupted."""
    db = tmp_path_factory.mktemp("reference") / "w.duckdb"
    out = cli("run", *FLAGS, "--db", db)
    assert out.exit_code == 0, out.stderr
    return fetch(db, ROWS)


def same_rows(got, want):
    assert [r[:4] for r in got] == [r[:4] for r in want]  # answers and correctness exactly
    for g, w in zip(got, want):
        for a, b in zip(g[4:], w[4:]):
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), (g, w)


# (where, batches committed when killed, staging debris expected)
POINTS = {
    "question pass": (Stall("question", nth=3, batches=2), 2, False),  # third chunk's question pass
    "mid-batch": (Stall("staged", nth=2, batches=1), 1, False),  # second chunk's condition rows
    "during commit": (Stall("commit", nth=2, batches=1), 1, True),  # second batch half written
    "while finishing": (Stall("finish", batches=3), 3, False),  # every batch in, compaction not swapped in
}


@pytest.mark.parametrize("where", list(POINTS))
def test_sigkill_then_resume(tmp_path, reference, where):
    stall, batches, debris = POINTS[where]
    db = tmp_path / "w.duckdb"
    child = spawn_cli("run", *FLAGS, "--db", db, out_dir=tmp_path / "child", stall=stall)
    try:
        assert child.wait_stalled() == batches
        child.kill()
    finally:
        child.cleanup()
    run_id = latest_run(db)
    # What a reader sees of the killed run: whole problems only, the run still `running`.
    check_run(db, run_id, batches * BATCH, CONDITIONS, PER_PROBLEM, status="running")
    staging = db.with_suffix(".shards") / "_staging" / run_id
    assert any(staging.glob("*/attention.parquet")) == debris

    out = cli("run", *FLAGS, "--resume", run_id, "--db", db)
    assert out.exit_code == 0, out.stderr
    check_run(db, run_id, PROBLEMS, CONDITIONS, PER_PROBLEM)
    same_rows(fetch(db, ROWS), reference)
