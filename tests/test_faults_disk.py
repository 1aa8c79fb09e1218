"""A full disk during a run: the run stops with one line that says what happened and how to go on, keeps
every problem it committed, and resumes to an exact, complete run once there is space again.

Two ways to fill the disk: every write transaction of the store failing with ENOSPC right before its
commit from the second batch on (always runs; with or without the catalog itself full, so that not even
the run's failed status can be written), and a real small filesystem (a tmpfs, when this process may
mount one) holding the warehouse folder, that a ballast file fills mid-run.
"""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest
from faults_helpers import PAIRS, TINY_HEADS, TINY_LAYERS, check_run, cli, fetch, latest_run, user_error

import engine.run as run_module
from warehouse import store as store_module

PROBLEMS, BATCH, CONDITIONS = 6, 2, 7
FLAGS = ["--problems", PROBLEMS, "--batch-size", BATCH, "--methods", "zero", "--attention", "all"]
PER_PROBLEM = CONDITIONS * TINY_LAYERS * TINY_HEADS * PAIRS


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("catalog_full", [False, True], ids=["data-full", "catalog-full-too"])
def test_failing_writer_stops_the_run_cleanly_and_it_resumes(tmp_path, monkeypatch, catalog_full):
    db = tmp_path / "w"
    real = store_module.Warehouse._before_commit
    commits = {"n": 0}

    def before_commit(self, what):
        """Every batch's transaction from the second on fails just before COMMIT, its Parquet files written
        (with catalog_full, so does the transaction that would mark the run failed)."""
        if what.startswith("committing"):
            commits["n"] += 1
            if commits["n"] >= 2:
                raise enospc(self.path / "data")
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
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False) if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    if done is None or done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() if done else 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Write until the filesystem is full."""
    with open(path, "wb") as f:
        for size in (1 << 20, 1 << 14, 1 << 10, 1 << 6, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
                    f.flush()


def test_real_full_filesystem_mid_run_then_resume(small_fs, monkeypatch):
    db = small_fs / "w"  # the whole warehouse folder (catalog, data, locks) on the small filesystem
    ballast = small_fs / "ballast"
    real_chunk, calls = run_module.run_chunk, {"n": 0}

    def chunk_then_fill(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first chunk: something else fills the disk
            fill(ballast)
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_chunk", chunk_then_fill)
    out = cli("run", *FLAGS, "--db", db)
    line = user_error(out, "No space left on device", "--resume")
    assert (db / "codi-warehouse.json").is_file(), out.stderr
    run_id = latest_run(db)
    assert f"run {run_id} stopped" in line and f"--resume {run_id}" in line, line

    ballast.unlink()  # space is back
    monkeypatch.setattr(run_module, "run_chunk", real_chunk)
    status, committed = fetch(db, "SELECT status, (SELECT count(*) FROM run_problems) FROM runs")[0]
    assert status in ("failed", "running") and committed in (0, 2, 4), (status, committed)  # whole chunks only
    check_run(db, run_id, committed, CONDITIONS, PER_PROBLEM, status=status)  # what is committed is whole
    out = cli("run", *FLAGS, "--resume", run_id, "--db", db)
    assert out.exit_code == 0, out.stderr
    check_run(db, run_id, PROBLEMS, CONDITIONS, PER_PROBLEM)
