"""SIGKILL a real writer process inside a commit (of a problem, of finishing, of resuming), then resume:
readers only ever see whole commits, and resume leaves exactly the expected rows, no duplicates, no
gaps, the run complete. The killed commit's Parquet files stay on disk, never listed nor read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from faults_helpers import committed_batches, orphan_files

import warehouse as wh
from warehouse.bench import sample_problem

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "20260101-000000-dddddd"
N, KILL_AT = 6, 3
SMALL = {"n_layers": 2, "n_heads": 2}
PER_PROBLEM = 43 * 2 * 2 * 35

# The child stalls inside a write transaction, right before its COMMIT (Warehouse._before_commit,
# wrapped in the child only), and says so; the test then kills it with SIGKILL, so the kill lands
# exactly there: for "append", the (KILL_AT+1)-th problem's Parquet files are written, not committed.
WRITER = textwrap.dedent(f"""
    import sys, time
    import warehouse as wh
    from warehouse.bench import sample_problem
    from warehouse.store import Warehouse
    db, where = sys.argv[1], sys.argv[2]
    commits = []

    def stall(self, what):
        commits.append(what.split()[0])
        if ((where == "append" and commits.count("committing") == {KILL_AT + 1})
                or (where == "finish" and what.startswith("finishing"))
                or (where == "resume" and what.startswith("resuming"))):
            print("stalled", flush=True)
            time.sleep(600)

    Warehouse._before_commit = stall
    store = wh.open_warehouse(db)
    run = store.begin_run({{"test": "kill"}}, run_id={RUN_ID!r})
    for i in range({KILL_AT} if where == "resume" else {N}):
        store.append_problem(run, *sample_problem(i, n_layers=2, n_heads=2))
    if where == "resume":
        store.finish_run(run, "failed", error="stopped")
        store.resume_run(run)
    store.finish_run(run)
""")


def kill_writer_at(db: Path, where: str, while_stalled) -> None:
    """Run the writer until it stalls at `where`, call while_stalled(pid), then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), where],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "stalled", child.stderr.read()
        while_stalled(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(timeout=30)


def fetch(store, sql):
    with store.reader() as con:
        return con.execute(sql).fetchall()


def committed_rows(db: Path) -> tuple:
    """What a reader in another process sees of the run: problems, results and attention rows."""
    store = wh.open_warehouse(db, read_only=True)
    try:
        return fetch(
            store,
            "SELECT (SELECT count(*) FROM run_problems), (SELECT count(DISTINCT problem_id) "
            "FROM results), (SELECT count(*) FROM results), (SELECT count(*) FROM attention), "
            "(SELECT status FROM runs)",
        )[0]
    finally:
        store.close()


def whole(problems: int, status: str) -> tuple:
    return (problems, problems, problems * 43, problems * PER_PROBLEM, status)


def assert_exactly_complete(store):
    assert fetch(store, "SELECT status FROM runs") == [("complete",)]
    key = "(problem_id, condition_id, layer, head, dst, src)"
    assert fetch(
        store, f"SELECT count(*), count(DISTINCT {key}), count(DISTINCT problem_id) FROM attention"
    ) == [(N * PER_PROBLEM, N * PER_PROBLEM, N)]
    assert fetch(store, "SELECT count(*), count(DISTINCT (problem_id, condition_id)) FROM results") == [
        (N * 43, N * 43)
    ]
    assert fetch(
        store, "SELECT list(ordinal ORDER BY ordinal), count(DISTINCT problem_id) FROM run_problems"
    ) == [(list(range(N)), N)]
    assert fetch(store, "SELECT count(*) FROM problems") == [(N,)]
    assert store.damaged_files() == {}  # every file the catalog lists is whole and readable


def resume_and_finish(db: Path) -> set[str]:
    store = wh.open_warehouse(db)
    done = store.resume_run(RUN_ID)
    for i in range(N):
        row, results, attention = sample_problem(i, **SMALL)
        if row["problem_id"] not in done:
            store.append_problem(RUN_ID, row, results, attention)
    store.finish_run(RUN_ID)
    return done


def problem_ids(n: int) -> set[str]:
    return {sample_problem(i)[0]["problem_id"] for i in range(n)}


def assert_busy(db: Path, pid: int) -> None:
    """While the writer lives, nobody else may resume, append to, finish or delete its run."""
    other = wh.open_warehouse(db)
    for attempt in (lambda: other.resume_run(RUN_ID), lambda: other.delete_run(RUN_ID)):
        with pytest.raises(wh.RunBusy, match=f"pid {pid}"):
            attempt()
    other.close()


def test_sigkill_in_the_middle_of_a_problem_commit_then_resume(tmp_path):
    db = tmp_path / "w"
    seen = {}

    def while_stalled(pid):  # the (KILL_AT+1)-th problem's files are on disk, its commit is not
        seen["rows"], seen["batches"], seen["orphans"] = (
            committed_rows(db),
            committed_batches(db),
            orphan_files(db),
        )
        assert_busy(db, pid)

    kill_writer_at(db, "append", while_stalled)
    assert seen == {"rows": whole(KILL_AT, "running"), "batches": KILL_AT, "orphans": 3}  # whole commits only
    assert committed_rows(db) == whole(KILL_AT, "running")
    store = wh.open_warehouse(db)
    torn = sample_problem(KILL_AT)[0]["problem_id"]
    assert fetch(store, f"SELECT count(*) FROM attention WHERE problem_id = '{torn}'") == [(0,)]
    listed = {Path(p).name for _table, p, _size, _run in store._data_files(None)}
    orphans = {p.name for p in (db / "data").rglob("*.parquet")} - listed
    assert (
        len(orphans) == orphan_files(db) == 3
    )  # its results, attention and run_problems files: never listed

    assert resume_and_finish(db) == problem_ids(KILL_AT)  # the dead writer's lock died with it
    assert_exactly_complete(store)  # the orphans were never read: no duplicates
    assert orphans <= {p.name for p in (db / "data").rglob("*.parquet")}  # and resume removed nothing
    with pytest.raises(wh.RunClosed):
        store.append_problem(RUN_ID, *sample_problem(N, **SMALL))


def test_sigkill_while_finishing_then_resume(tmp_path):
    db = tmp_path / "w"
    seen = {}

    def while_stalled(pid):
        seen["rows"] = committed_rows(db)
        assert_busy(db, pid)

    kill_writer_at(db, "finish", while_stalled)
    assert seen["rows"] == committed_rows(db) == whole(N, "running")  # the status change is not in
    assert orphan_files(db) == 0  # finishing writes no data file
    assert resume_and_finish(db) == problem_ids(N)
    assert_exactly_complete(wh.open_warehouse(db))


def test_sigkill_while_resuming_a_failed_run_then_resume(tmp_path):
    db = tmp_path / "w"
    seen = {}

    def while_stalled(pid):
        seen["rows"] = committed_rows(db)
        assert_busy(db, pid)

    kill_writer_at(db, "resume", while_stalled)
    assert (
        seen["rows"] == committed_rows(db) == whole(KILL_AT, "failed")
    )  # still failed: the resume is not in
    assert resume_and_finish(db) == problem_ids(KILL_AT)
    assert_exactly_complete(wh.open_warehouse(db))
