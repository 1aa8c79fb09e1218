"""A warehouse is a folder that can be copied, moved and shared, checked from the user's side.

A real small run of the bundled gpt2-tiny builds the original; the CLI (in process, and as a separate
`python cli.py` from another directory) reads and writes copies of it. Every file of the original is
hashed before and after the copies are used: nothing done to a copy touches the original, and a copy
keeps working after the original is deleted (the catalog stores paths relative to the folder). A copy
that its reader cannot write (chmod -R a-w) is read through a private copy of its catalog, creating
nothing in the folder; as root that is checked with the capabilities dropped (`setpriv`), which makes
root obey permission bits like any user.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from faults_helpers import REPO, cli

from warehouse import lake

RUN = ["--problems", 2, "--batch-size", 1, "--methods", "zero", "--attention", "all"]
QUERY = "SELECT run_id, count(*) AS n, round(sum(kl_answer), 9) AS kl FROM results GROUP BY ALL ORDER BY ALL"
NO_CAPS = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path -> sha256 of its bytes (folders: 'dir')."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def ok(*args) -> str:
    out = cli(*args)
    assert out.exit_code == 0 and out.exception is None, (args, out.stderr, out.exception)
    return out.stdout


READS = {  # what a user reads: runs, stats, a query, the attention rows, the views
    "runs": ("runs", "--json"),
    "stats": ("stats", "--boot", 100, "--perm", 100, "--json"),
    "query": ("query", QUERY, "--format", "csv"),
    "attention": ("query", "SELECT count(*), round(sum(weight), 6) FROM attention", "--format", "csv"),
    "views": ("views",),
}


def rounded(value):
    """JSON with its floats to 9 significant digits: a parallel sum's last digits vary between reads."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def same(name: str, text: str):
    return rounded(json.loads(text)) if name in ("runs", "stats") else text


def answers(db, names=tuple(READS)) -> dict:
    return {name: same(name, ok(*READS[name], "--db", str(db))) for name in names}


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """A warehouse made by a real run (2 problems of gpt2-tiny, every attention weight)."""
    db = tmp_path_factory.mktemp("portable") / "original"
    ok("run", *RUN, "--db", db)
    return db


def sqlite_files_only(before: dict[str, str], after: dict[str, str]) -> None:
    """A read-only open changes no file; SQLite may add its WAL index (-shm) and an empty -wal."""
    added = set(after) - set(before)
    assert added <= {lake.CATALOG + "-shm", lake.CATALOG + "-wal"}, added
    assert {k: after[k] for k in before} == before


@pytest.mark.slow
def test_a_copy_answers_the_same_and_takes_runs_without_touching_the_original(original, tmp_path):
    seen = answers(original)
    first = seen["runs"]["runs"][0]["run_id"]
    before = files(original)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy, symlinks=True)  # what `cp -a` does
    assert answers(copy) == seen
    ok("run", "--problems", 1, "--methods", "zero", "--attention", "none", "--seed", 7, "--db", copy)
    ok("runs", "delete", first, "--yes", "--db", copy)  # removes the run's data files, in the copy only
    assert files(original) == before  # not one byte of the original changed, nothing added or removed
    assert answers(original) == seen
    in_copy = json.loads(ok("runs", "--json", "--db", copy))["runs"]
    assert [r["status"] for r in in_copy] == ["complete"] and in_copy[0]["run_id"] != first
    shutil.rmtree(original.parent / "moved-away", ignore_errors=True)
    kept = original.rename(original.parent / "moved-away")  # the original gone from its place
    try:
        assert (
            json.loads(ok("runs", "--json", "--db", copy))["runs"] == in_copy
        )  # the copy never read its files
        ok("query", "SELECT * FROM results", "--format", "csv", "--db", copy)
    finally:
        kept.rename(original)


@pytest.mark.slow
def test_a_moved_folder_opens_by_relative_and_absolute_paths_from_anywhere(original, tmp_path, monkeypatch):
    seen = answers(original)
    moved = tmp_path / "a" / "b" / "renamed"
    moved.parent.mkdir(parents=True)
    shutil.copytree(original, tmp_path / "w", symlinks=True)
    (tmp_path / "w").rename(moved)  # a move: the folder's new name and place
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert answers(moved) == seen  # absolute
    assert answers(Path("..") / "a" / "b" / "renamed") == seen  # relative to another directory
    done = subprocess.run(  # the real command line, in its own process, from that directory
        [sys.executable, str(REPO / "cli.py"), "query", QUERY, "--format", "csv", "--db", "../a/b/renamed"],
        cwd=other,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout == seen["query"], done.stderr
    ok("run", "--problems", 1, "--methods", "zero", "--attention", "none", "--db", "../a/b/renamed")
    assert len(json.loads(ok("runs", "--json", "--db", moved))["runs"]) == 2


@pytest.mark.slow
def test_the_catalog_stores_only_paths_relative_to_the_folder(original):
    db = sqlite3.connect(f"file:{original / lake.CATALOG}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchall() == [
            ("data/",)
        ]
        assert db.execute("SELECT DISTINCT path_is_relative FROM ducklake_data_file").fetchall() == [(1,)]
        assert db.execute("SELECT DISTINCT path_is_relative FROM ducklake_table").fetchall() == [(1,)]
        assert db.execute("SELECT count(*) FROM ducklake_data_file").fetchall()[0][0] >= 4
    finally:
        db.close()
    where = str(original.resolve()).encode()
    for path in original.rglob("*"):  # no file anywhere in the folder names the folder itself
        assert path.is_dir() or where not in path.read_bytes(), path


@pytest.mark.slow
def test_reading_a_copy_changes_no_file_in_it(original, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    before = files(copy)
    seen = answers(original)
    for name in ("runs", "stats", "query", "attention"):  # the read-only commands (`views` applies views)
        assert answers(copy, [name])[name] == seen[name]
        sqlite_files_only(before, files(copy))


def _reader_cannot_write(folder: Path) -> list[str]:
    """The command prefix that runs as a user who cannot write `folder` (already chmod a-w)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: read-only permission cannot be tested here")
    probe = subprocess.run([*NO_CAPS, "touch", str(folder / "probe")], capture_output=True)
    if probe.returncode == 0:
        (folder / "probe").unlink()
        pytest.skip("root keeps its capabilities here: read-only permission cannot be tested")
    return NO_CAPS


@pytest.mark.slow
def test_a_copy_shared_read_only_is_read_without_creating_anything(original, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(original, shared, symlinks=True)
    for stale in (lake.CATALOG + "-wal", lake.CATALOG + "-shm"):  # as a clean `cp -a` of a closed one
        (shared / stale).unlink(missing_ok=True)
    seen = answers(original)
    for path in [shared, *shared.rglob("*")]:  # chmod -R a-w
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    try:
        before = files(shared)
        prefix = _reader_cannot_write(shared)

        def read(*args) -> str:
            done = subprocess.run(
                [*prefix, sys.executable, str(REPO / "cli.py"), *map(str, args), "--db", str(shared)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, (args, done.stderr)
            return done.stdout

        for name, args in READS.items():  # `views`: the views it holds (it cannot apply queries/ anew)
            assert same(name, read(*args)) == seen[name], name
        assert files(shared) == before  # nothing created, nothing changed
        refused = subprocess.run(  # a writing command says it cannot, in one line
            [*prefix, sys.executable, str(REPO / "cli.py"), "runs", "delete", "latest", "--yes"]
            + ["--db", str(shared)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode != 0 and refused.stderr.startswith("Error: "), refused.stderr
        assert "cannot be written by this user" in refused.stderr and "copy the folder" in refused.stderr
        assert "Traceback" not in refused.stderr and files(shared) == before
    finally:
        for path in [shared, *shared.rglob("*")]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)
