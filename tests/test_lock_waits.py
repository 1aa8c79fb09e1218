"""A commit that waits on a locked catalog says who holds it, and a run it stops says how to go on.

Another process holds the SQLite catalog's write lock (plain `sqlite3`, BEGIN EXCLUSIVE). Within about
a second the waiting command says so on stderr, once: the holder (pid, program, writing), how long it
waits at most and how to stop. Past the store's timeout its one-line error names that process, and a
`run` stopped by it stays `running` with its committed problems and prints its resume command, which
finishes the run once the lock is gone.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time

import pytest
from faults_helpers import REPO, cli, fetch, user_error

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


def test_a_wait_is_logged_once_naming_the_holder(tmp_path, monkeypatch, caplog):
    """The library does not print: it logs one warning on `codi.warehouse` (cli.py prints it)."""
    store = wh.open_warehouse(tmp_path / "w")
    monkeypatch.setattr(lake, "WRITE_TIMEOUT_S", 2.5)
    holder = hold_catalog(store.path)
    try:
        with caplog.at_level(logging.WARNING, logger="codi.warehouse"), pytest.raises(WarehouseBusy):
            store.begin_run({}, run_id="waits")
    finally:
        stop(holder)
    said = [r for r in caplog.records if r.name == "codi.warehouse"]
    assert len(said) == 1, said  # once per wait, not once per retry
    assert f"pid {holder.pid} (" in said[0].getMessage() and f"`kill {holder.pid}`" in said[0].getMessage()
    assert "beginning run waits: the warehouse catalog is locked" in said[0].getMessage()
    assert "waiting up to 2 s" in said[0].getMessage() or "waiting up to 3 s" in said[0].getMessage()


WAITING_CLI = textwrap.dedent("""
    import sys
    from warehouse import lake
    lake.WRITE_TIMEOUT_S = float(sys.argv[1])
    from cli import cli
    cli.main(args=sys.argv[2:], prog_name="cli.py")
""")


def test_a_command_waiting_on_the_lock_says_so_at_once_on_stderr(tmp_path):
    """`ingest gsm8k` (a real process) meets the held lock: one `note:` line on stderr within seconds,
    long before its 60 s timeout, naming the holder's pid and how to stop; when the holder is gone the
    command goes on and succeeds."""
    db = tmp_path / "w"
    wh.open_warehouse(db).close()
    data = tmp_path / "two.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"question": f"Tom has {n} apples and gets 2 more. How many?", "answer": f"#### {n + 2}"}
            )
            + "\n"
            for n in (3, 4)
        )
    )
    holder = hold_catalog(db)
    started = time.monotonic()
    waiting = subprocess.Popen(
        [sys.executable, "-c", WAITING_CLI, "60", "ingest", "gsm8k", str(data), "--db", str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = waiting.stderr.readline()  # blocks until the child says something (or ends)
        said_after = time.monotonic() - started
        assert waiting.poll() is None, (line, waiting.stderr.read())  # still waiting: said before giving up
    finally:
        stop(holder)
    out, rest = waiting.communicate(timeout=60)
    assert said_after < 20, said_after  # the process starts, opens the warehouse, waits ~1 s, says it
    assert line.startswith("note: adding problems: the warehouse catalog is locked, held by "), line
    for fragment in (
        f"pid {holder.pid} (",
        "writing",
        "waiting up to 60 s",
        f"`kill {holder.pid}`",
        "Ctrl-C",
    ):
        assert fragment in line, (fragment, line)
    assert "note:" not in rest, rest  # said once
    assert waiting.returncode == 0, rest
    assert fetch(db, "SELECT count(*) FROM problems") == [(2,)]
