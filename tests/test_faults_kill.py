"""SIGKILL of a real `run` process at several points, then `run --resume`: no duplicates, no gaps, and the
same answers as a run that was never interrupted.

The child is `python cli.py run ...` in its own process (tests/faults_helpers.py), stalled at the chosen
point and killed there with SIGKILL; resume runs in this process. The store-level kills (a writer killed
mid-problem and mid-finish) are tests/test_warehouse_kill.py.
"""

from __future__ import annotations

import math

import pytest
from faults_helpers import (
    PAIRS,
    TINY_HEADS,
    TINY_LAYERS,
    Stall,
    check_run,
    cli,
    fetch,
    latest_run,
    orphan_files,
    spawn_cli,
)

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

PROBLEMS, BATCH, CONDITIONS = 6, 2, 7  # 3 chunks; baseline + 6 thoughts x zero
FLAGS = ["--problems", PROBLEMS, "--batch-size", BATCH, "--methods", "zero", "--attention", "all"]
PER_PROBLEM = CONDITIONS * TINY_LAYERS * TINY_HEADS * PAIRS  # attention rows
ROWS = (
    "SELECT problem_id, condition_id, answer_text, correct, kl_first, disruption FROM results ORDER BY 1, 2"
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The rows of the same run, never interrupted."""
    db = tmp_path_factory.mktemp("reference") / "w"
    out = cli("run", *FLAGS, "--db", db)
    assert out.exit_code == 0, out.stderr
    return fetch(db, ROWS)


def same_rows(got, want):
    assert [r[:4] for r in got] == [r[:4] for r in want]  # answers and correctness exactly
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g[4:], w[4:], strict=True):
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), (g, w)


# (where, batches committed when killed, uncommitted files expected)
POINTS = {
    "question pass": (Stall("question", nth=3, batches=2), 2, False),  # third chunk's question pass
    "mid-batch": (Stall("staged", nth=2, batches=1), 1, False),  # second chunk's condition rows
    "during commit": (
        Stall("commit", nth=2, batches=1),
        1,
        True,
    ),  # second batch's files written, not committed
    "while finishing": (Stall("finish", batches=3), 3, False),  # every batch in, status not yet complete
}


@pytest.mark.parametrize("where", list(POINTS))
def test_sigkill_then_resume(tmp_path, reference, where):
    stall, batches, debris = POINTS[where]
    db = tmp_path / "w"
    child = spawn_cli("run", *FLAGS, "--db", db, out_dir=tmp_path / "child", stall=stall)
    try:
        assert child.wait_stalled() == batches
        child.kill()
    finally:
        child.cleanup()
    run_id = latest_run(db)
    # What a reader sees of the killed run: whole problems only, the run still `running`.
    check_run(db, run_id, batches * BATCH, CONDITIONS, PER_PROBLEM, status="running")
    assert (orphan_files(db) > 0) == debris  # the killed commit's files: on disk, never in the catalog

    out = cli("run", *FLAGS, "--resume", run_id, "--db", db)
    assert out.exit_code == 0, out.stderr
    check_run(db, run_id, PROBLEMS, CONDITIONS, PER_PROBLEM)
    same_rows(fetch(db, ROWS), reference)


def test_sigkill_in_runs_delete_leaves_the_run_whole_or_gone(tmp_path):
    """`runs delete` is one catalog transaction: killed just before it commits, the run is still all there."""
    db = tmp_path / "w"
    out = cli(
        "run", "--problems", 2, "--batch-size", 1, "--methods", "zero", "--attention", "all", "--db", db
    )
    assert out.exit_code == 0, out.stderr
    run_id = latest_run(db)
    child = spawn_cli(
        "runs", "delete", run_id, "--yes", "--db", db, out_dir=tmp_path / "child", stall=Stall("delete")
    )
    try:
        child.wait_stalled()
        child.kill()
    finally:
        child.cleanup()
    check_run(db, run_id, 2, CONDITIONS, PER_PROBLEM)  # complete, every row still there
    out = cli("runs", "delete", run_id, "--yes", "--db", db)  # the dead process's writer lock died with it
    assert out.exit_code == 0, out.stderr
    assert fetch(
        db,
        "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM results), "
        "(SELECT count(*) FROM attention), (SELECT count(*) FROM run_problems)",
    ) == [(0, 0, 0, 0)]
