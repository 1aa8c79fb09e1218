"""A full disk during a run: the run stops with one line that says what happened and how to go on, keeps
every problem it committed, and resumes to an exact, complete run once there is space again.

Two ways to fill the disk: the store's batch transactions failing with ENOSPC right before COMMIT from
the second batch on (always runs), raised as Python raises it (OSError) and as DuckDB does when writing
a Parquet file fails (duckdb.IOException), with or without the catalog full too, so that not even the
run's failed status can be written; and a real small filesystem (a tmpfs, when this process may mount
one) holding the warehouse folder, that a ballast file fills after the first batch is committed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from faults_helpers import (
    PAIRS,
    TINY_HEADS,
    TINY_LAYERS,
    check_run,
    cli,
    committed_batches,
    fetch,
    latest_run,
    user_error,
)

import engine.runs.local as run_module
from warehouse import store as store_module

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

PROBLEMS, BATCH, CONDITIONS = 6, 2, 7
FLAGS = ["--problems", PROBLEMS, "--batch-size", BATCH, "--methods", "zero", "--attention", "all"]
PER_PROBLEM = CONDITIONS * TINY_LAYERS * TINY_HEADS * PAIRS


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def data_file_full(path) -> OSError:  # what a Python-level write (fsync, a lock file) raises
    return enospc(path)


def duckdb_write_full(path) -> duckdb.IOException:  # what DuckDB raises when writing a Parquet file fails
    return duckdb.IOException(
        f'IO Error: Could not write file "{path}/ducklake-x.parquet": {os.strerror(errno.ENOSPC)}'
    )


@pytest.mark.parametrize("error", [data_file_full, duckdb_write_full], ids=["OSError", "duckdb.IOException"])
@pytest.mark.parametrize("catalog_full", [False, True], ids=["data-full", "catalog-full-too"])
def test_failing_writer_stops_the_run_cleanly_and_it_resumes(tmp_path, monkeypatch, catalog_full, error):
    db = tmp_path / "w"
    real = store_module.Warehouse._before_commit
    commits = {"n": 0}

    def before_commit(self, what):
        """Every batch's transaction from the second on fails just before COMMIT, its Parquet files written
        (with catalog_full, so does the transaction that would mark the run failed)."""
        if what.startswith("committing"):
            commits["n"] += 1
            if commits["n"] >= 2:
                raise error(self.path / "data" / "main" / "results")
        elif catalog_full and what.startswith("finishing"):
            raise enospc(self.path / "catalog.sqlite")
        return real(self, what)

    monkeypatch.setattr(store_module.Warehouse, "_before_commit", before_commit)
    out = cli("run", *FLAGS, "--db", db)
    run_id = latest_run(db)
    user_error(out, f"run {run_id} stopped", "No space left on device", f"--resume {run_id}")
    if catalog_full:  # not even the failed status could be written: the run stays running, resume takes it
        assert fetch(db, "SELECT status, error FROM runs") == [("running", None)]
    else:
        assert fetch(db, "SELECT status, error LIKE '%No space left%' FROM runs") == [("failed", True)]
    check_run(db, run_id, BATCH, CONDITIONS, PER_PROBLEM, status="running" if catalog_full else "failed")
    assert commits["n"] == 2  # the batches after the failed one were never attempted

    monkeypatch.setattr(store_module.Warehouse, "_before_commit", real)  # space is back
    out = cli("run", *FLAGS, "--resume", run_id, "--db", db)
    assert out.exit_code == 0, out.stderr
    check_run(db, run_id, PROBLEMS, CONDITIONS, PER_PROBLEM)


@pytest.fixture()
def small_fs(tmp_path):
    """A 24 MiB tmpfs (skipped where this process may not mount one, e.g. CI without root)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
        if hasattr(os, "geteuid") and os.geteuid() == 0
        else None
    )
    if done is None or done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() if done else 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Write until the filesystem is full (unbuffered: closing the file must not fail on a last flush)."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 14, 1 << 10, 1 << 6, 1):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * size):
                    pass


def test_real_full_filesystem_mid_run_then_resume(small_fs, monkeypatch):
    db = small_fs / "w"  # the whole warehouse folder (catalog, data, locks) on the small filesystem
    ballast = small_fs / "ballast"
    real_chunk, calls = run_module.run_chunk, {"n": 0}

    def chunk_then_fill(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # once the first batch is committed, something else fills the disk
            deadline = time.monotonic() + 60
            while committed_batches(db) < 1 and time.monotonic() < deadline:
                time.sleep(0.02)  # the writer thread commits the first chunk while the model works
            fill(ballast)
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_chunk", chunk_then_fill)
    out = cli("run", *FLAGS, "--db", db)
    assert (db / "codi-warehouse.json").is_file(), out.stderr
    run_id = latest_run(db)
    user_error(out, f"run {run_id} stopped", "No space left on device", f"--resume {run_id}")

    ballast.unlink()  # space is back
    monkeypatch.setattr(run_module, "run_chunk", real_chunk)
    status, committed = fetch(db, "SELECT status, (SELECT count(*) FROM run_problems) FROM runs")[0]
    assert status in ("failed", "running") and committed == BATCH, (
        status,
        committed,
    )  # the first batch, whole
    check_run(db, run_id, BATCH, CONDITIONS, PER_PROBLEM, status=status)
    out = cli("run", *FLAGS, "--resume", run_id, "--db", db)
    assert out.exit_code == 0, out.stderr
    check_run(db, run_id, PROBLEMS, CONDITIONS, PER_PROBLEM)
