"""SIGKILL a real writer process in the middle of a problem (or of finishing), then resume: exactly
the expected rows, no duplicates, no gaps, and the run ends complete."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import warehouse as wh
from warehouse.bench import sample_problem

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "20260101-000000-dddddd"
N, KILL_AT = 6, 3
SMALL = {"n_layers": 2, "n_heads": 2}
PER_PROBLEM = 43 * 2 * 2 * 35

# The child stalls at a chosen point (by wrapping a warehouse function, in the child only) and says
# so; the test then kills it with SIGKILL, so the kill lands exactly there.
WRITER = textwrap.dedent(f"""
    import sys, time
    import warehouse as wh
    from warehouse import shards
    from warehouse.bench import sample_problem
    db, where = sys.argv[1], sys.argv[2]
    real_write, real_compact, written = shards.write_parquet, shards.Shards.compact, []

    def write_then_stall(table, path, name, durable=False):
        real_write(table, path, name, durable)
        written.append(name)
        if where == "append" and written.count("attention") == {KILL_AT + 1}:
            print("stalled", flush=True)
            time.sleep(600)

    def compact_then_stall(self, run_id):
        staged = real_compact(self, run_id)
        print("stalled", flush=True)
        time.sleep(600)

    shards.write_parquet, shards.Shards.compact = write_then_stall, compact_then_stall
    store = wh.open_warehouse(db)
    run = store.begin_run({{"test": "kill"}}, run_id={RUN_ID!r})
    for i in range({N}):
        store.append_problem(run, *sample_problem(i, n_layers=2, n_heads=2))
    store.finish_run(run)
""")


def kill_writer_at(db: Path, where: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(db), where], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "stalled", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()


def fetch(store, sql):
    with store.reader() as con:
        return con.execute(sql).fetchall()


def assert_exactly_complete(store):
    assert fetch(store, "SELECT status FROM runs") == [("complete",)]
    key = "(problem_id, condition_id, layer, head, dst, src)"
    assert fetch(store, f"SELECT count(*), count(DISTINCT {key}), count(DISTINCT problem_id) FROM attention") == [
        (N * PER_PROBLEM, N * PER_PROBLEM, N)]
    assert fetch(store, "SELECT count(*), count(DISTINCT (problem_id, condition_id)) FROM results") == [(N * 43, N * 43)]
    assert fetch(store, "SELECT list(ordinal ORDER BY ordinal), count(DISTINCT problem_id) FROM run_problems") == [
        (list(range(N)), N)]
    assert fetch(store, "SELECT count(*) FROM problems") == [(N,)]
    assert not any(store.shards.staging.iterdir()) and not any(store.shards.trash.iterdir())


def resume_and_finish(db: Path) -> set[str]:
    store = wh.open_warehouse(db)
    done = store.resume_run(RUN_ID)
    for i in range(N):
        row, results, attention = sample_problem(i, **SMALL)
        if row["problem_id"] not in done:
            store.append_problem(RUN_ID, row, results, attention)
    store.finish_run(RUN_ID)
    return done


def test_sigkill_in_the_middle_of_a_problem_then_resume(tmp_path):
    db = tmp_path / "w.duckdb"
    kill_writer_at(db, "append")
    store = wh.Warehouse(db)
    assert fetch(store, "SELECT status FROM runs") == [("running",)]
    assert list((store.shards.staging / RUN_ID).glob("*/attention.parquet"))  # it died mid-problem
    torn = sample_problem(KILL_AT)[0]["problem_id"]
    assert fetch(store, f"SELECT count(*) FROM attention WHERE problem_id = '{torn}'") == [(0,)]
    assert fetch(store, "SELECT count(DISTINCT problem_id) FROM results") == [(KILL_AT,)]
    done = resume_and_finish(db)
    assert done == {sample_problem(i)[0]["problem_id"] for i in range(KILL_AT)}
    assert_exactly_complete(store)
    with pytest.raises(wh.RunClosed):
        store.append_problem(RUN_ID, *sample_problem(N, **SMALL))


def test_sigkill_while_finishing_then_resume(tmp_path):
    db = tmp_path / "w.duckdb"
    kill_writer_at(db, "finish")
    store = wh.Warehouse(db)
    assert fetch(store, "SELECT status, (SELECT count(*) FROM run_problems) FROM runs") == [("running", N)]
    assert resume_and_finish(db) == {sample_problem(i)[0]["problem_id"] for i in range(N)}
    assert_exactly_complete(store)
