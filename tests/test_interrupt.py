"""Ctrl-C (SIGINT) and a scheduler's stop (SIGTERM) interrupt a real `python cli.py run` process: the chunk
in flight is dropped, the run is marked `interrupted`, one line says how many problems are kept and the
exact resume command, exit 130; that command, run as printed, completes the run with every problem once.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from faults_helpers import REPO, check_run, cli, committed_batches, fetch

pytestmark = pytest.mark.slow  # real signals to `python cli.py run` subprocesses

PROBLEMS, BATCH, CONDITIONS = 12, 2, 7  # 6 chunks; baseline + 6 thoughts x zero
FLAGS = ["--problems", PROBLEMS, "--batch-size", BATCH, "--methods", "zero", "--attention", "none"]
TIMEOUT_S = 300


def python_cli(*args) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), *map(str, args)]


def interrupt_run(db, signum: int, out_dir) -> tuple[int, str, str]:
    """Start `run` in its own process, send `signum` once its first chunk is committed; returns
    (exit code, stdout, stderr)."""
    out, err = out_dir / "stdout", out_dir / "stderr"
    with out.open("w") as o, err.open("w") as e:
        child = subprocess.Popen(python_cli("run", *FLAGS, "--db", db), cwd=REPO, stdout=o, stderr=e)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while committed_batches(db) < 1:
                assert child.poll() is None, err.read_text()
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            os.kill(child.pid, signum)
            code = child.wait(TIMEOUT_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return code, out.read_text(), err.read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_interrupts_run_and_printed_resume_completes_it(tmp_path, signum):
    db = tmp_path / "w"
    code, stdout, stderr = interrupt_run(db, signum, tmp_path)
    assert code == 130, stderr
    for text in (stdout, stderr):
        assert "Traceback" not in text and "Aborted!" not in text, text
    (run_id, kept), *others = fetch(
        db,
        "SELECT r.run_id, (SELECT count(*) FROM run_problems p WHERE p.run_id = r.run_id) FROM runs r",
    )
    assert not others
    assert 1 <= kept < PROBLEMS and kept % BATCH == 0  # whole chunks only: the one in flight is dropped
    line = f"interrupted: {kept} of {PROBLEMS} problems kept in run {run_id}; resume with: "
    lines = [x for x in stderr.splitlines() if x.startswith("interrupted")]
    assert lines == [f"{line}python cli.py run --resume {run_id} --db {db}"], stderr
    assert stdout == ""
    assert stderr.rstrip("\n").endswith(lines[0])  # the last thing said
    shown = cli("runs", "show", run_id, "--db", db, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert '"status": "interrupted"' in shown.stdout
    assert fetch(db, "SELECT status, error FROM runs") == [
        ("interrupted", f"interrupted by {signal.Signals(signum).name}")
    ]

    command = shlex.split(lines[0].split("resume with: ", 1)[1])  # exactly as printed
    assert command[:2] == ["python", "cli.py"]
    done = subprocess.run(
        python_cli(*command[2:]), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    check_run(db, run_id, PROBLEMS, CONDITIONS)  # every problem exactly once, complete
    tail = done.stderr.rstrip("\n").splitlines()[-2:]
    assert tail == [
        f"results: run {run_id} in the warehouse {db}",
        f"next: python cli.py stats --run {run_id} --db {db} | python cli.py charts --run {run_id} --db {db} "
        f"| python cli.py query \"SELECT * FROM results WHERE run_id = '{run_id}' LIMIT 10\" --db {db}",
    ], done.stderr
    assert "results:" not in done.stdout and "loading model" in done.stderr


def test_run_says_what_it_does_first_and_json_stdout_stays_clean(tmp_path):
    db = tmp_path / "w"
    out = cli(
        "run",
        "--problems",
        3,
        "--batch-size",
        3,
        "--methods",
        "random",
        "--attention",
        "none",
        "--db",
        db,
        "--json",
    )
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)  # nothing but the JSON object on stdout
    said = out.stderr.splitlines()
    assert said[0].startswith("loading model "), out.stderr
    assert any(x.startswith("computing the donor pool") for x in said), out.stderr
    assert summary["status"] == "complete"
