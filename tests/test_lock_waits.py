"""A commit that waits on a locked catalog says who holds it, and a run it stops says how to go on.

Another process holds the SQLite catalog's write lock (plain `sqlite3`, BEGIN EXCLUSIVE) past the
store's timeout: the store's one-line error names that process (pid, program, writing), and a `run`
stopped by it stays `running` with its committed problems and prints its resume command, which
finishes the run once the lock is gone.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from faults_helpers import cli, fetch, user_error

import engine.runs.local
import warehouse as wh
from warehouse import lake
from warehouse.lake import WarehouseBusy

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

HOLD = textwrap.dedent("""
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def hold_catalog(db, seconds: float = 60) -> subprocess.Popen:
    """A process holding the catalog's write lock (until killed or `seconds` pass)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db / lake.CATALOG), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def stop(holder: subprocess.Popen) -> None:
    holder.kill()
    holder.wait(10)


def test_a_commit_that_times_out_names_the_holder(tmp_path, monkeypatch):
    store = wh.open_warehouse(tmp_path / "w")
    monkeypatch.setattr(lake, "WRITE_TIMEOUT_S", 1.5)
    holder = hold_catalog(store.path)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseBusy) as caught:
            store.begin_run({}, run_id="waits")
        assert 1.5 <= time.monotonic() - started < 10
    finally:
        stop(holder)
    message = str(caught.value)
    assert f"pid {holder.pid} (" in message and "-c" in message and "writing" in message, message
    assert "stayed locked for 2 s" in message and "beginning run waits" in message
    store.begin_run({}, run_id="waits")  # the lock is gone: the same call goes through


def test_a_run_stopped_by_a_locked_catalog_stays_running_and_says_how_to_resume(tmp_path, monkeypatch):
    db = tmp_path / "w"
    flags = ["--problems", 2, "--batch-size", 1, "--methods", "zero", "--attention", "none", "--db", db]
    monkeypatch.setattr(lake, "WRITE_TIMEOUT_S", 1.5)
    real, holders = engine.runs.local.run_chunk, []

    def chunk_then_lock(*args, **kwargs):
        out = real(*args, **kwargs)
        if not holders:  # the run has begun; its first commit will meet the lock
            holders.append(hold_catalog(db))
        return out

    monkeypatch.setattr(engine.runs.local, "run_chunk", chunk_then_lock)
    try:
        line = user_error(
            cli("run", *flags),
            "the warehouse catalog stayed locked",
            f"pid {holders[0].pid}",
            "it stays running",
            "run --resume",
        )
    finally:
        for holder in holders:
            stop(holder)
    run_id = line.split("run --resume ")[1].split("`")[0]
    assert fetch(db, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [("running",)]
    monkeypatch.setattr(engine.runs.local, "run_chunk", real)
    out = cli("run", "--resume", run_id, *flags)
    assert out.exit_code == 0, out.stderr
    assert fetch(
        db, "SELECT status, count(p.problem_id) FROM runs JOIN run_problems p USING (run_id) GROUP BY ALL"
    ) == [("complete", 2)]
