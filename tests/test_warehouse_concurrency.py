"""Reads during writes, with real processes: a writer commits a problem every ~0.2 s while
`python cli.py query` runs again and again in other processes; every query succeeds and the count
of committed problems only grows, never showing part of a problem."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

REPO = Path(__file__).resolve().parent.parent
RUN_ID = "20260101-000000-cccccc"
PER_PROBLEM = 43 * 12 * 12 * 35  # GPT-2 shaped attention rows

WRITER = textwrap.dedent(f"""
    import sys, time
    from pathlib import Path
    import warehouse as wh
    from warehouse.bench import sample_problem
    db, stop = sys.argv[1], Path(sys.argv[2])
    store = wh.open_warehouse(db)
    run = store.begin_run({{"test": "concurrency"}}, run_id={RUN_ID!r})
    print("begun", flush=True)
    n = 0
    while not stop.exists() and n < 300:  # the test says when it has seen enough
        store.append_problem(run, *sample_problem(n))
        n += 1
        time.sleep(0.2)
    store.finish_run(run)
    print(n, flush=True)
""")

COUNT = (
    f"SELECT (SELECT count(*) FROM run_problems WHERE run_id = '{RUN_ID}') AS problems, "
    f"(SELECT count(*) FROM attention WHERE run_id = '{RUN_ID}') AS attention"
)


def query_counts(db: Path) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "cli.py", "query", COUNT, "--format", "csv", "--db", str(db)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    problems, attention = out.stdout.splitlines()[1].split(",")
    return int(problems), int(attention)


def test_queries_succeed_and_see_a_growing_count_while_a_run_writes(tmp_path):
    db, stop = tmp_path / "w", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(stop)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "begun", writer.stderr.read()
        seen = []
        while writer.poll() is None:
            seen.append(query_counts(db))
            if len({p for p, _ in seen}) >= 4:
                stop.touch()  # seen growing: let the writer finish the run while queries go on
        assert writer.returncode == 0, writer.stderr.read()
        n = int(writer.stdout.read().split()[-1])
        seen.append(query_counts(db))
    finally:
        writer.kill()
    problems = [p for p, _ in seen]
    assert problems == sorted(problems), seen  # never goes back
    assert len(set(problems)) >= 4, seen  # and was seen growing
    for p, attention in seen:
        assert attention % PER_PROBLEM == 0 and abs(attention // PER_PROBLEM - p) <= 1, (
            seen
        )  # whole problems only
    assert seen[-1] == (n, n * PER_PROBLEM)
