"""Two processes writing one warehouse at once.

- Two new runs into the same (not yet existing) warehouse: one process creates it, the other uses it;
  both commit concurrently (the catalog serializes commits, retried on a locked catalog) and both
  finish complete and whole.
- A second writer of the same run (`run --resume` while the first still runs, or `runs delete`) is
  refused with one line and changes nothing; the first writer's rows are intact, and after it dies the
  run resumes exactly.
Readers during writes: tests/test_warehouse_concurrency.py.
"""

from __future__ import annotations

import pytest
from faults_helpers import (
    PAIRS,
    TINY_HEADS,
    TINY_LAYERS,
    Stall,
    check_run,
    cli,
    committed_batches,
    latest_run,
    spawn_cli,
    two_runs_at_once,
    user_error,
)

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

CONDITIONS = 7  # baseline + 6 thoughts x zero
PER_CONDITION = TINY_LAYERS * TINY_HEADS * PAIRS  # attention rows of one condition of one problem


def test_two_new_runs_into_one_new_warehouse_both_complete(tmp_path):
    db = tmp_path / "w"
    runs = two_runs_at_once(db, tmp_path)
    assert sorted(runs.values()) == [3, 4]
    for run_id, n in runs.items():
        check_run(db, run_id, n, CONDITIONS, CONDITIONS * PER_CONDITION)


def test_second_writer_of_a_running_run_is_refused_and_changes_nothing(tmp_path):
    db = tmp_path / "w"
    flags = ["--problems", 4, "--batch-size", 2, "--methods", "zero", "--attention", "baseline", "--db", db]
    first = spawn_cli("run", *flags, out_dir=tmp_path / "a", stall=Stall("staged", nth=2, batches=1))
    try:
        assert first.wait_stalled() == 1
        run_id = latest_run(db)

        user_error(
            cli("run", *flags, "--resume", run_id),
            f"run {run_id} is being written by another process (pid {first.process.pid})",
            "wait for it to end",
        )
        user_error(cli("runs", "delete", run_id, "--yes", "--db", db), "being written by another process")
        # The first writer's committed batch, its half-done chunk and its run are untouched.
        assert committed_batches(db) == 1
        check_run(db, run_id, 2, CONDITIONS, PER_CONDITION, status="running")  # baseline attention only
        first.kill()
    finally:
        first.cleanup()
    out = cli("run", *flags, "--resume", run_id)  # the lock died with its process
    assert out.exit_code == 0, out.stderr
    check_run(db, run_id, 4, CONDITIONS, PER_CONDITION)
