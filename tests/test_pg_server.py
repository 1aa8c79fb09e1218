"""DuckLake on a real PostgreSQL catalog (tests/pg_server.py): one writer, then two writer processes at once.

The DuckDB extensions load offline from the duckdb-extension-* packages. DuckDB derives an extension's entry
point from its file name, so sqlite/postgres are linked under their canonical names (sqlite_scanner,
postgres_scanner) first.

Run as a script (`python tests/test_pg_server.py DSN DATA_PATH EXT_DIR MAX_RETRY COMMITS ROWS WORKER`) it is
one writer process of the concurrency test: it connects, prints `ready`, waits for a line on stdin, writes,
and prints how many COMMITs it had to redo and their error text.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from pg_server import fresh_pg_database, pg_server, postgres_dsn  # noqa: F401  (fixtures)

EXTENSIONS = {  # package -> (file stem in the package, name DuckDB expects)
    "duckdb_extension_ducklake": ("ducklake", "ducklake"),
    "duckdb_extension_sqlite": ("sqlite", "sqlite_scanner"),
    "duckdb_extension_postgres": ("postgres", "postgres_scanner"),
}


def extension_dir(dest: Path) -> Path:
    """Link the packaged extension files into `dest` under the names DuckDB can load them by."""
    for package, (stem, name) in EXTENSIONS.items():
        pkg_dir = Path(importlib.import_module(package).__file__).parent
        (found,) = pkg_dir.glob(f"extensions/*/{stem}.duckdb_extension")
        link = dest / f"{name}.duckdb_extension"
        if not link.exists():
            link.symlink_to(found)
    return dest


def connect_ducklake(dsn: str, data_path: Path, ext_dir: Path) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with the DuckLake on `dsn` attached as `wh`; no extension is downloaded."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for _, name in EXTENSIONS.values():
        con.execute(f"LOAD '{ext_dir / name}.duckdb_extension'")
    con.execute(f"ATTACH 'ducklake:postgres:{dsn}' AS wh (DATA_PATH '{data_path}/')")
    return con


def write_batches(con, worker: int, commits: int, rows: int) -> list[str]:
    """Insert `commits` batches of `rows` rows, each in its own transaction, redoing a batch whose COMMIT
    fails on a conflict with another writer. Returns the first two lines of each conflict's error text.

    A failed COMMIT has already rolled the transaction back (a ROLLBACK then raises "no transaction is
    active"), and the Parquet files it wrote are deleted, so a redo neither loses nor duplicates rows."""
    conflicts: list[str] = []
    for batch in range(commits):
        for _attempt in range(20):
            con.execute("BEGIN")
            con.execute("INSERT INTO wh.rows SELECT ?, ?, range FROM range(?)", [worker, batch, rows])
            try:
                con.execute("COMMIT")
                break
            except duckdb.TransactionException as e:
                conflicts.append(" ".join(str(e).splitlines()[:2]))
        else:
            raise RuntimeError(f"batch {batch}: 20 conflicting commits in a row: {conflicts[-1]}")
    return conflicts


@pytest.fixture
def ext_dir(tmp_path):
    (tmp_path / "ext").mkdir()
    return extension_dir(tmp_path / "ext")


def test_server_answers(postgres_dsn, pg_server):  # noqa: F811
    assert "dbname=codi" in postgres_dsn
    assert pg_server.sql("SELECT current_database()", "codi").strip() == "codi"


def test_ducklake_on_postgres_roundtrip(fresh_pg_database, ext_dir, tmp_path, pg_server):  # noqa: F811
    con = connect_ducklake(fresh_pg_database, tmp_path / "data", ext_dir)
    con.execute("CREATE TABLE wh.rows (worker INT, batch INT, i BIGINT)")
    con.execute("INSERT INTO wh.rows SELECT 0, 0, range FROM range(5)")  # small: inlined in the catalog
    con.execute("INSERT INTO wh.rows SELECT 0, 1, range FROM range(1000)")  # large: a Parquet file
    assert con.execute("SELECT count(*), sum(i) FROM wh.rows").fetchone() == (1005, 10 + 499500)
    con.close()
    # the catalog really is in PostgreSQL, and a new connection reads the rows back
    dbname = fresh_pg_database.split()[0].removeprefix("dbname=")
    snapshots = pg_server.sql("SELECT count(*) FROM ducklake_snapshot", dbname)
    assert snapshots.strip() == "4"  # the initial one, CREATE, 2 INSERTs
    con = connect_ducklake(fresh_pg_database, tmp_path / "data", ext_dir)
    assert con.execute("SELECT count(*) FROM wh.rows WHERE batch = 1").fetchone() == (1000,)
    assert list((tmp_path / "data").rglob("*.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("max_retry", ["default", "0"])
def test_two_writer_processes(fresh_pg_database, ext_dir, tmp_path, pg_server, max_retry):  # noqa: F811
    """Two processes each commit 20 x 10k rows into one table at the same time; every row lands exactly once.

    DuckLake retries a commit that lost the race for the next snapshot id itself (ducklake_max_retry_count,
    default 10; each lost race is a duplicate-key error in the server log). With the setting at 0 the
    conflict reaches Python as duckdb.TransactionException and write_batches redoes the transaction."""
    commits, rows = 20, 10_000
    con = connect_ducklake(fresh_pg_database, tmp_path / "data", ext_dir)
    con.execute("CREATE TABLE wh.rows (worker INT, batch INT, i BIGINT)")
    log = pg_server.root / "server.log"
    lost_races_before = log.read_text().count("ducklake_snapshot_pkey")
    args = [fresh_pg_database, str(tmp_path / "data"), str(ext_dir), max_retry, str(commits), str(rows)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    procs = [subprocess.Popen([sys.executable, __file__, *args, str(w)], text=True, **pipes) for w in (1, 2)]
    try:
        for p in procs:  # both connected: start them together
            assert p.stdout.readline() == "ready\n", p.communicate()[0]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    lost_races = log.read_text().count("ducklake_snapshot_pkey") - lost_races_before
    print(f"\nmax_retry={max_retry}: {lost_races} commits lost the race", *outputs, sep="\n")

    per_batch = con.execute(
        "SELECT worker, batch, count(*), count(DISTINCT i), min(i), max(i) FROM wh.rows "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert per_batch == [(w, b, rows, rows, 0, rows - 1) for w in (1, 2) for b in range(commits)]
    assert con.execute("SELECT count(*) FROM wh.rows").fetchone() == (2 * commits * rows,)
    data_files = con.execute("SELECT count(*) FROM ducklake_list_files('wh', 'rows')").fetchone()[0]
    assert data_files == len(list((tmp_path / "data").rglob("*.parquet")))  # no orphans from failed commits


if __name__ == "__main__":
    dsn, data_path, ext, max_retry, commits, rows, worker = sys.argv[1:]
    con = connect_ducklake(dsn, Path(data_path), Path(ext))
    if max_retry != "default":
        con.execute(f"SET ducklake_max_retry_count = {int(max_retry)}")
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    conflicts = write_batches(con, int(worker), int(commits), int(rows))
    elapsed = time.perf_counter() - started
    print(f"worker {worker} (pid {os.getpid()}): {elapsed:.2f} s, COMMITs redone: {len(conflicts)}")
    for text in sorted(set(conflicts)):
        print(f"  {conflicts.count(text)} x {text}")
