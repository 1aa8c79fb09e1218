"""Shared by the fault tests (tests/test_faults_*.py): drive the CLI as a user would and check what is left.

- `cli(...)` runs `python cli.py ...` in this process (click's runner; stdout and stderr apart).
- `spawn_cli(...)` runs it in a separate process that can stall at a chosen point (`Stall`) and then
  be killed with a real SIGKILL. Processes are forked from a fork server that has imported torch,
  transformers and the project once, so a child costs milliseconds instead of the ~5 s of CPU a fresh
  interpreter needs; the child is an ordinary process running `cli.main`, and dies like one.
- `user_error(...)` is what every bad input must produce: a non-zero exit and exactly one line on
  stderr, starting "Error: ", that names the problem; no traceback anywhere.
- `check_run(...)` is what every interrupted run must leave after resume: exactly the expected rows,
  no duplicates, no gaps, the warehouse still opens, and every data file it lists readable.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY_LAYERS, TINY_HEADS, PAIRS = 6, 8, 42  # bundled gpt2-tiny: attention rows per condition = 6 * 8 * 42
CHILD_TIMEOUT_S = 120


# --- in process ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def cli(*args) -> Outcome:
    from click.testing import CliRunner

    from cli import cli as group

    result = CliRunner().invoke(group, [str(a) for a in args], prog_name="cli.py")
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exc)


def user_error(out: Outcome, *fragments: str) -> str:
    """Assert a user error: non-zero exit, one `Error: ...` line on stderr naming the problem."""
    assert out.exception is None, f"unhandled {type(out.exception).__name__}: {out.exception}"
    assert out.exit_code not in (0, None), (out.stdout, out.stderr)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    errors = [
        line
        for line in out.stderr.split("\n")
        if line.strip() and not line.startswith("note:") and "\r" not in line and not line.endswith(" ...")
    ]  # progress bars (tqdm redraws with \r) and steps ("loading model X ...") are not messages
    assert len(errors) == 1 and errors[0].startswith("Error: "), out.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# --- warehouse checks ------------------------------------------------------------------------------
def fetch(db, sql: str, params=None) -> list[tuple]:
    import warehouse as wh

    with wh.open_warehouse(db, read_only=True).reader() as con:
        return con.execute(sql, params or []).fetchall()


def check_run(
    db, run_id: str, problems: int, conditions: int, attention_per_problem: int = 0, status: str = "complete"
) -> None:
    """Exactly `problems` x `conditions` results and `problems` x `attention_per_problem` attention rows,
    all distinct; commit ordinals 0..n-1; every problem known; every listed data file readable."""
    import warehouse as wh

    store = wh.open_warehouse(db, read_only=True)
    assert fetch(db, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [(status,)]
    assert fetch(
        db,
        "SELECT count(*), count(DISTINCT (problem_id, condition_id)), count(DISTINCT problem_id) "
        "FROM results WHERE run_id = ?",
        [run_id],
    ) == [(problems * conditions,) * 2 + (problems,)]
    key = "(problem_id, condition_id, layer, head, dst, src)"
    expected = problems * attention_per_problem
    assert fetch(db, f"SELECT count(*), count(DISTINCT {key}) FROM attention WHERE run_id = ?", [run_id]) == [
        (expected, expected)
    ]
    assert fetch(
        db,
        "SELECT list(ordinal ORDER BY ordinal), count(DISTINCT problem_id) FROM run_problems "
        "WHERE run_id = ?",
        [run_id],
    ) == [(list(range(problems)), problems)]
    assert fetch(
        db,
        "SELECT count(*) FROM problems WHERE problem_id IN (SELECT problem_id FROM results WHERE run_id = ?)",
        [run_id],
    ) == [(problems,)]
    assert store.damaged_files() == {}


def two_runs_at_once(db, out_dir: Path) -> dict[str, int]:
    """Two `run` processes (3 and 4 problems, zero at every thought, all attention) into `db` at once;
    asserts both exit 0 and returns {run_id: problems planned}."""
    flags = ["--batch-size", 1, "--methods", "zero", "--attention", "all", "--db", db]
    first = spawn_cli("run", "--problems", 3, "--seed", 1, *flags, out_dir=Path(out_dir) / "a")
    second = spawn_cli("run", "--problems", 4, "--seed", 2, *flags, out_dir=Path(out_dir) / "b")
    try:
        a, b = first.wait(), second.wait()
    finally:
        first.cleanup()
        second.cleanup()
    assert a.exit_code == 0, a.stderr
    assert b.exit_code == 0, b.stderr
    return dict(fetch(db, "SELECT run_id, n_problems_planned FROM runs"))


def latest_run(db) -> str:
    return fetch(db, "SELECT run_id FROM runs ORDER BY run_seq DESC LIMIT 1")[0][0]


def committed_batches(db) -> int:
    """Commits of problem batches so far, read straight from the SQLite catalog (fast enough to poll)."""
    catalog = Path(db) / "catalog.sqlite"
    if not catalog.exists():
        return 0
    con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(
            "SELECT count(*) FROM ducklake_data_file f JOIN ducklake_table t USING (table_id) "
            "WHERE t.table_name = 'run_problems' AND t.end_snapshot IS NULL "
            "AND f.end_snapshot IS NULL"
        ).fetchall()[0][0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        con.close()


def orphan_files(db) -> int:
    """Parquet files on disk that the catalog does not list (what a killed writer leaves: harmless)."""
    store = __import__("warehouse").open_warehouse(db, read_only=True)
    listed = {Path(p).name for _t, p, _s, _r in store._data_files(None)}
    store.close()
    return sum(1 for p in (Path(db) / "data").rglob("*.parquet") if p.name not in listed)


# --- separate processes that stall and get killed ---------------------------------------------------
@dataclass(frozen=True)
class Stall:
    """Where the child stops: `point` on its `nth` call, once `batches` batches are committed.

    points: "question" (a chunk's question pass), "staged" (a chunk's condition rows, after its
    baseline rows), "commit" (a batch written: its Parquet files are on disk, its catalog commit is
    not), "finish" (the run's closing transaction about to commit), "delete" (`runs delete`'s
    transaction about to commit).
    """

    point: str
    nth: int = 1
    batches: int = 0


_SERVER_MODULES = ["faults_helpers", "cli", "engine.runs.local", "engine.runs.executors", "warehouse.store"]


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_SERVER_MODULES)
    return ctx


def _stall_here(marker: Path, db: str, batches: int) -> None:
    deadline = time.monotonic() + 60
    while committed_batches(db) < batches and time.monotonic() < deadline:
        time.sleep(0.02)  # the writer thread commits the previous chunk while the model works
    partial = marker.with_suffix(".partial")
    partial.write_text(str(committed_batches(db)))
    partial.rename(marker)  # the test sees the marker whole or not at all
    time.sleep(3600)


def _install(stall: Stall, marker: Path, db: str) -> None:
    from engine.interventions import chunk as runner
    from warehouse import store

    calls = {"n": 0}

    def counted(real, after=False, when=lambda *a, **k: True):
        def wrapper(*args, **kwargs):
            hit = when(*args, **kwargs)
            if hit:
                calls["n"] += 1
            if hit and calls["n"] == stall.nth and not after:
                _stall_here(marker, db, stall.batches)
            result = real(*args, **kwargs)
            if hit and calls["n"] == stall.nth and after:
                _stall_here(marker, db, stall.batches)
            return result

        return wrapper

    if stall.point == "question":
        runner.start_questions = counted(runner.start_questions)
    elif stall.point == "staged":
        runner.run_staged = counted(runner.run_staged)
    elif stall.point in ("commit", "finish", "delete"):  # inside the transaction, just before COMMIT
        prefix = {"commit": "committing", "finish": "finishing", "delete": "deleting"}[stall.point]
        store.Warehouse._before_commit = counted(
            store.Warehouse._before_commit, when=lambda self, what: what.startswith(prefix)
        )
    else:
        raise ValueError(stall.point)


def _child(args: list[str], stall: Stall | None, out_dir: str) -> None:
    out = Path(out_dir)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    import threading

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    tqdm.set_lock(threading.RLock())  # not a multiprocessing lock: a killed child would leak its semaphore
    if stall is not None:
        _install(stall, out / "stalled", args[args.index("--db") + 1])
    from cli import cli as group

    code = 0
    try:
        group.main(args=args, prog_name="cli.py")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Child:
    """`python cli.py ARGS` in its own process; `wait_stalled`, `kill` (SIGKILL), `wait`, `stderr`."""

    def __init__(self, args, out_dir: Path, stall: Stall | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.process = _context().Process(
            target=_child, args=([str(a) for a in args], stall, str(self.out_dir))
        )
        self.process.start()

    def read(self, name: str) -> str:
        path = self.out_dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.read("stderr")

    @property
    def stdout(self) -> str:
        return self.read("stdout")

    def wait_stalled(self) -> int:
        """Block until the child reached its stall point; returns the batches committed by then."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        marker = self.out_dir / "stalled"
        while not marker.exists():
            assert self.process.is_alive(), (
                f"child ended (exit {self.process.exitcode}): {self.stderr[-2000:]}"
            )
            assert time.monotonic() < deadline, f"child never stalled: {self.stderr[-2000:]}"
            time.sleep(0.02)
        return int(marker.read_text())

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(CHILD_TIMEOUT_S)
        assert self.process.exitcode == -signal.SIGKILL

    def wait(self) -> Outcome:
        self.process.join(CHILD_TIMEOUT_S)
        assert self.process.exitcode is not None, "child did not finish in time"
        return Outcome(self.process.exitcode, self.stdout, self.stderr)

    def cleanup(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


def spawn_cli(*args, out_dir: Path, stall: Stall | None = None) -> Child:
    return Child(args, out_dir, stall)
