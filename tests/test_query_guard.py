"""`python cli.py query` is read-only by construction: the statement check, --out, and --timeout.

The statement check and the --out check are pure functions, tested on in-memory DuckDB; the CLI tests
use a real warehouse folder.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

import warehouse as wh
from cli import cli
from warehouse import guard, output
from warehouse.errors import WarehouseError
from warehouse.query import (
    GRACE_S,
    READ_ONLY_PRAGMAS,
    READ_ONLY_TABLE_FUNCTIONS,
    QueryAbandoned,
    QueryTimeout,
    check_read_only,
    run_statements,
)

ROOT = Path(__file__).resolve().parents[1]
SLOW_SQL = "SELECT count(*) FROM range(1000000000000) a, range(1000) b"  # hours of work
_ARGS = {"table_info": "('t')", "storage_info": "('t')"}


def refused(sql: str) -> str:
    with pytest.raises(WarehouseError) as caught:
        check_read_only(sql)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("query is read-only: ") and " refused; " in message, message
    return message


@contextlib.contextmanager
def memory_connection(threads: int = 1):
    con = duckdb.connect(config={"threads": threads})
    try:
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()


def memory(threads: int = 1):
    """A connection factory for run_statements: a fresh in-memory DuckDB."""
    return lambda: memory_connection(threads)


@contextlib.contextmanager
def fifo_watch(path: Path):
    """A FIFO at `path`; yields a list that gets True whenever something opened it to read (released)."""
    os.mkfifo(path)
    opened: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader waits
            except OSError:
                time.sleep(0.02)
                continue
            opened.append(True)
            os.close(fd)  # the reader sees end of file
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield opened
    finally:
        stop.set()
        watcher.join(5)


def release_abandoned(fifo: Path) -> None:
    """Let the statements abandoned on `fifo` end (a writer opens and closes it), so none outlives the
    test."""
    deadline = time.monotonic() + 15
    while any(t.is_alive() for t in guard._abandoned) and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        time.sleep(0.05)
    assert not any(t.is_alive() for t in guard._abandoned)


def load_extensions(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """DuckLake, SQLite and PostgreSQL from their PyPI packages (named as DuckDB wants them)."""
    for package, name in (
        ("ducklake", "ducklake"),
        ("sqlite", "sqlite_scanner"),
        ("postgres", "postgres_scanner"),
    ):
        spec = importlib.util.find_spec(f"duckdb_extension_{package}")
        pattern = os.path.join(
            spec.submodule_search_locations[0], "extensions", f"v{duckdb.__version__}", "*"
        )
        [found] = glob.glob(pattern)
        link = folder / f"{name}.duckdb_extension"
        link.symlink_to(found)
        con.execute(f"LOAD '{link}'")


# --- statements ----------------------------------------------------------------------------------
def test_reads_pass_and_run(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS x, 'v' || range AS y FROM range(5)")
    for fmt in ("csv", "parquet", "json"):
        con.execute(f"COPY t TO '{tmp_path}/a.{fmt}' (FORMAT {fmt})")
    for sql in [
        "SELECT * FROM t",
        f"FROM '{tmp_path}/a.csv'",
        f"SELECT count(*) FROM read_csv('{tmp_path}/a.csv') "
        f"JOIN read_parquet('{tmp_path}/a.parquet') USING (x)",
        f"SELECT * FROM read_json('{tmp_path}/a.json')",
        f"SELECT count(*) FROM glob('{tmp_path}/*')",
        f"SELECT content FROM read_text('{tmp_path}/a.csv')",
        "WITH a AS (SELECT * FROM range(3)) SELECT * FROM a, (SELECT * FROM generate_series(2)) g",
        "SELECT * FROM t WHERE x IN (SELECT * FROM unnest([1, 2]))",
        "DESCRIBE t",
        "SHOW TABLES",
        "SUMMARIZE t",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "PRAGMA table_info('t')",
        "PRAGMA show_tables",
        "pragma version",
        "CALL pragma_table_info('t')",
        "/* a note */ CALL pragma_version()",
        "SELECT * FROM duckdb_functions() WHERE function_name = 'range'",
        "SELECT pragma FROM (SELECT 1 AS pragma)",  # a column may be called pragma
        "SELECT 1; SELECT 2",
    ]:
        for statement in check_read_only(sql):
            con.execute(statement).fetchall()


def test_every_read_only_pragma_exists_and_changes_nothing():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x INTEGER)")
    pragmas = {
        r[0]
        for r in con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type = 'pragma'"
        ).fetchall()
    }
    assert pragmas >= READ_ONLY_PRAGMAS
    settings = con.execute("SELECT name, value FROM duckdb_settings() ORDER BY name").fetchall()
    for name in sorted(READ_ONLY_PRAGMAS):
        sql = f"PRAGMA {name}{_ARGS.get(name, '')}"
        assert [s.type for s in con.extract_statements(sql)] == [duckdb.StatementType.SELECT], name
        for statement in check_read_only(sql):
            con.execute(statement).fetchall()
    assert con.execute("SELECT name, value FROM duckdb_settings() ORDER BY name").fetchall() == settings


def test_every_other_pragma_is_refused_before_it_is_parsed():
    pragmas = {
        r[0]
        for r in duckdb.connect()
        .execute("SELECT function_name FROM duckdb_functions() WHERE function_type = 'pragma'")
        .fetchall()
    }
    assert {"import_database", "copy_database", "force_checkpoint", "enable_profiling"} <= pragmas
    for name in sorted(pragmas - READ_ONLY_PRAGMAS):
        assert f"PRAGMA {name} refused" in refused(f"PRAGMA {name}('x')")
    assert "PRAGMA threads refused" in refused("PRAGMA threads = 1")


def test_import_database_is_refused_without_reading_its_files(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "load.sql").write_text(f"COPY (SELECT 42 AS a) TO '{tmp_path}/overwritten.csv';\n")
    with fifo_watch(folder / "schema.sql") as read:  # parsing the PRAGMA would open it (and wait)
        for sql in [
            f"PRAGMA import_database('{folder}')",
            f"/* c */ pragma \"Import_Database\"('{folder}')",
            f"SELECT 1; PRAGMA import_database('{folder}')",
            f"EXPLAIN PRAGMA import_database('{folder}')",
        ]:
            assert "pragma import_database refused" in refused(sql).lower()
        time.sleep(0.1)
    assert not read, "the check opened the files of PRAGMA import_database"
    assert not (tmp_path / "overwritten.csv").exists()


@pytest.mark.parametrize(
    "sql, fragment",
    [
        (
            "CALL enable_logging(storage='file', storage_path='{d}/logs')",
            "enable_logging() (it changes logging",
        ),
        ("SELECT * FROM enable_logging(storage='file', storage_path='{d}/logs')", "enable_logging()"),
        ('SELECT * FROM system.main."Enable_Logging"()', "enable_logging()"),
        ("WITH a AS (SELECT * FROM checkpoint()) SELECT * FROM a", "checkpoint() (it writes the database)"),
        ("SELECT * FROM range(2) WHERE range IN (SELECT 1 FROM force_checkpoint())", "force_checkpoint()"),
        ("SELECT * FROM read_csv((SELECT 'x' FROM disable_logging()))", "disable_logging()"),
        ("SELECT list_transform([1], x -> (SELECT 1 FROM truncate_duckdb_logs()))", "truncate_duckdb_logs()"),
        ("SELECT * FROM range(1) r JOIN LATERAL (FROM enable_profiling()) p ON true", "enable_profiling()"),
        (
            "FROM ducklake_expire_snapshots('wh', older_than => now())",
            "ducklake_expire_snapshots() (it changes the lake)",
        ),
        ("CALL ducklake_cleanup_old_files('wh', cleanup_all => true)", "ducklake_cleanup_old_files()"),
        ("CALL ducklake_merge_adjacent_files('wh')", "ducklake_merge_adjacent_files()"),
        ("CALL ducklake_add_data_files('wh', 'runs', '{d}/x.parquet')", "ducklake_add_data_files()"),
        ("CALL ducklake_set_option('wh', 'parquet_compression', 'gzip')", "ducklake_set_option()"),
        ("CALL ducklake_flush_inlined_data('wh')", "ducklake_flush_inlined_data()"),
        ("SELECT * FROM query('SELECT 1')", "query() (it runs SQL given as a string"),
        ("SELECT * FROM json_execute_serialized_sql('{{}}')", "json_execute_serialized_sql()"),
        (
            "SELECT * FROM sqlite_query('{d}/c.sqlite', 'DELETE FROM t')",
            "sqlite_query() (it reaches a database",
        ),
        ("SELECT * FROM postgres_execute('pg', 'DROP TABLE t')", "postgres_execute()"),
        ("SELECT * FROM some_new_function()", "some_new_function() (it is not on the list"),
        ("SELECT write_log('x')", "write_log() (it writes to the log)"),
        ("EXPLAIN SELECT * FROM enable_logging()", "enable_logging()"),
        ("EXPLAIN (ANALYZE, FORMAT json) SELECT * FROM checkpoint()", "checkpoint()"),
        ("EXPLAIN COPY (SELECT 1) TO '{d}/x.csv'", "COPY statements are refused"),
        ("CHECKPOINT", "CHECKPOINT statements are refused"),
        ("FORCE CHECKPOINT", "FORCE CHECKPOINT statements are refused"),
        ("SET threads = 1", "SET statements are refused"),
        ("INSTALL httpfs", "LOAD statements are refused"),
        ("EXPORT DATABASE '{d}/export'", "EXPORT statements are refused"),
        ("COPY (SELECT 1) TO '{d}/x.csv'", "COPY statements are refused"),
        ("CREATE TABLE q AS PIVOT t ON a", "CREATE statements are refused"),
        ("COPY (PIVOT t ON a) TO '{d}/x.csv'", "COPY statements are refused"),
        ("INSERT INTO t PIVOT t ON a", "INSERT statements are refused"),
        ("EXPLAIN PIVOT t ON a", "EXPLAIN of a PIVOT without an IN list"),
        ("PIVOT (FROM checkpoint()) ON a", "checkpoint() (it writes the database)"),
        ("PIVOT (SELECT * FROM query('DROP TABLE t')) ON a USING count(*)", "query() (it runs SQL"),
        ("PIVOT t ON a USING count(write_log('x'))", "write_log() (it writes to the log)"),
        ("SELECT * FROM (PIVOT t ON a) p JOIN enable_logging() e ON true", "enable_logging()"),
        (
            "WITH p AS (PIVOT t ON a) SELECT * FROM p, sqlite_query('{d}/c.db', 'DELETE FROM x')",
            "sqlite_query()",
        ),
        ("PIVOT t ON a; SET threads = 1", "SET statements are refused"),
    ],
)
def test_statements_and_functions_that_write_are_refused_anywhere(tmp_path, sql, fragment):
    assert fragment in refused(sql.format(d=tmp_path))
    assert not list(tmp_path.iterdir())


def test_what_the_refusals_stop_is_real(tmp_path):
    con = duckdb.connect()  # on a plain connection, enable_logging writes files where it is told
    con.execute(f"CALL enable_logging(storage='file', storage_path='{tmp_path}/logs')")
    con.execute("SELECT 1").fetchall()
    con.close()
    assert list((tmp_path / "logs").iterdir())


def test_every_table_function_is_allowlisted_or_refused(tmp_path):
    con = duckdb.connect()
    load_extensions(con, tmp_path)
    names = {
        r[0]
        for r in con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type IN ('table', 'table_macro')"
        ).fetchall()
    }
    assert names >= READ_ONLY_TABLE_FUNCTIONS, READ_ONLY_TABLE_FUNCTIONS - names
    assert not READ_ONLY_TABLE_FUNCTIONS & set(guard._WHY)
    for name in sorted(names):
        sqls = [
            f"SELECT * FROM {name}()",
            f"CALL {name}()",
            f"SELECT 1 WHERE EXISTS (FROM {name}())",
            f"PIVOT (FROM {name}()) ON x USING count(*)",  # expands into CREATE TYPE + SELECT
        ]
        if name in READ_ONLY_TABLE_FUNCTIONS:
            for sql in sqls:
                check_read_only(sql)
        else:
            for sql in sqls:
                assert f"table function {name}()" in refused(sql)


# --- every read passes, DuckDB's help is kept (issue 16) -----------------------------------------
@pytest.fixture()
def results_db(tmp_path):
    """A DuckDB file with `results` and `token_importance`, and a factory of read-only connections."""
    path = tmp_path / "r.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE results AS SELECT method, layer, score::DOUBLE AS score FROM (VALUES "
        "('attn', 1, 0.5), ('attn', 2, 0.25), ('grad', 1, 1.0)) v(method, layer, score)"
    )
    con.execute("CREATE TABLE token_importance AS SELECT method, layer FROM results")
    con.close()

    @contextlib.contextmanager
    def read_only():
        reader = duckdb.connect(str(path), read_only=True)
        try:
            yield reader
        finally:
            reader.close()

    return read_only


@pytest.mark.parametrize(
    "sql, rows",
    [
        ("PIVOT (SELECT method FROM results) ON method USING count(*)", [{"attn": 2, "grad": 1}]),
        ("PIVOT results ON method USING count(*) GROUP BY layer ORDER BY layer", None),
        ("PIVOT results ON method USING sum(score) GROUP BY layer ORDER BY layer", None),
        ("PIVOT results ON method, layer USING count(*)", None),
        (
            "SELECT * FROM (PIVOT (SELECT method FROM results) ON method USING count(*)) p",
            [{"attn": 2, "grad": 1}],
        ),
        (
            "WITH p AS (PIVOT (SELECT method FROM results) ON method USING count(*)) SELECT grad FROM p",
            [{"grad": 1}],
        ),
        (
            "PIVOT (SELECT method, score FROM results WHERE layer = 1) ON method USING max(score)",
            [{"attn": 0.5, "grad": 1.0}],
        ),
        ("PIVOT (SELECT method FROM results) ON method IN ('attn') USING count(*)", [{"attn": 2}]),
        ("SUMMARIZE (PIVOT results ON method USING count(*))", None),
        ("UNPIVOT (SELECT layer, score FROM results) ON layer, score INTO NAME k VALUE v", None),
        ("UNPIVOT results ON COLUMNS(* EXCLUDE (method)) INTO NAME k VALUE v", None),
        ("SUMMARIZE results", None),
        ("DESCRIBE results", None),
        ("SHOW results", None),
        ("SHOW TABLES", [{"name": "results"}, {"name": "token_importance"}]),
        ("EXPLAIN SELECT 1", None),
        ("EXPLAIN ANALYZE SELECT 1", None),
        ("EXPLAIN PIVOT results ON method IN ('attn') USING count(*)", None),
        ("FROM results LIMIT 1", None),
        ("FROM results SELECT count(*) AS n", [{"n": 3}]),
        ("SELECT 1; PIVOT (SELECT method FROM results) ON method", [{"attn": 2, "grad": 1}]),
        ("PIVOT results ON method USING count(*); SELECT 2 AS two", [{"two": 2}]),
    ],
)
def test_every_read_passes_and_runs_on_a_read_only_connection(results_db, sql, rows):
    result = run_statements(results_db, check_read_only(sql), timeout=60)
    assert result is not None and result.num_rows > 0, sql
    if rows is not None:
        assert result.to_pylist() == rows


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("RESET threads", "SET"),
        ("USE memory", "SET"),
        ("SET VARIABLE v = 1", "SET"),
        ("VACUUM", "VACUUM"),
        ("ANALYZE", "VACUUM"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("EXECUTE p", "EXECUTE"),
        ("BEGIN", "TRANSACTION"),
        ("ATTACH ':memory:' AS m", "ATTACH"),
        ("DETACH m", "DETACH"),
        ("LOAD httpfs", "LOAD"),
        ("UPDATE EXTENSIONS", "UPDATE"),
        ("CREATE SECRET s (TYPE s3)", "CREATE"),
        ("CREATE MACRO m(a) AS a", "CREATE"),
        ("MERGE INTO r USING (SELECT 1 AS x) s ON r.x = s.x WHEN MATCHED THEN DELETE", "MERGE_INTO"),
        ("UPDATE r SET x = 1", "UPDATE"),
        ("ALTER TABLE r ADD COLUMN y INTEGER", "ALTER"),
        ("COPY FROM DATABASE a TO b", "COPY"),
        ("SELECT 1; PIVOT r ON a; DROP TABLE r", "DROP"),
    ],
)
def test_every_statement_that_is_not_a_read_is_refused(sql, kind):
    assert f"{kind} statements are refused" in refused(sql)


@pytest.mark.parametrize(
    "sql, help_text",
    [
        ("SELECT * FROM token_importanc", 'Did you mean "token_importance"?'),
        ("SELECT methd FROM token_importance", 'Candidate bindings: "method"'),
        ("SELECT lenght(method) FROM results", 'Did you mean "length"?'),
        ("PIVOT results ON methd USING count(*)", 'Candidate bindings: "method"'),
    ],
)
def test_duckdb_errors_keep_their_help_on_one_line(results_db, sql, help_text):
    with pytest.raises(WarehouseError) as caught:
        run_statements(results_db, check_read_only(sql), timeout=60)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert help_text in message and "Error: " in message, message
    assert not message.rstrip().endswith("^")


def test_bad_sql_keeps_duckdbs_whole_message_on_one_line():
    with pytest.raises(WarehouseError) as caught:
        check_read_only("SELEC 1")
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert (
        message.startswith("bad SQL: Parser Error: syntax error at or near") and "LINE 1: SELEC 1" in message
    )


# --- --out ---------------------------------------------------------------------------------------
def test_out_may_not_name_the_warehouse_or_anything_in_it(tmp_path, monkeypatch):
    lake = tmp_path / "w"
    (lake / "data").mkdir(parents=True)
    (lake / "catalog.sqlite").write_text("catalog")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "to-catalog.csv").symlink_to(lake / "catalog.sqlite")
    (tmp_path / "to-new.csv").symlink_to(lake / "new.csv")  # dangling
    (tmp_path / "lake-link").symlink_to(lake)
    inside = [
        lake,
        lake / "catalog.sqlite",
        lake / "data" / "x.parquet",
        lake / "new.csv",
        elsewhere / ".." / "w" / "x.csv",
        tmp_path / "missing" / ".." / "w" / "catalog.sqlite",
        tmp_path / "to-catalog.csv",
        tmp_path / "to-new.csv",
        tmp_path / "lake-link" / "x.csv",
    ]
    for out in inside:
        with pytest.raises(WarehouseError, match="is inside the warehouse") as caught:
            output.check_out_path(out, lake)
        assert len(str(caught.value).splitlines()) == 1
    with pytest.raises(WarehouseError, match="is inside the warehouse"):
        output.check_out_path(lake / "x.csv", tmp_path / "lake-link")  # the warehouse named by a link
    monkeypatch.chdir(lake / "data")
    for out in ["x.csv", "../catalog.sqlite", "../../w/x.csv"]:
        with pytest.raises(WarehouseError, match="is inside the warehouse"):
            output.check_out_path(out, lake)
    monkeypatch.chdir(elsewhere)
    for out, resolved in [
        ("x.csv", elsewhere / "x.csv"),
        ("../w.csv", tmp_path / "w.csv"),
        ("../wx/../w2.csv", tmp_path / "w2.csv"),
        (tmp_path / "w-copy.csv", tmp_path / "w-copy.csv"),
    ]:
        assert output.check_out_path(out, lake) == resolved
    with pytest.raises(WarehouseError, match="is a directory"):
        output.check_out_path(elsewhere, lake)
    with pytest.raises(WarehouseError, match="does not exist"):
        output.check_out_path(tmp_path / "nowhere" / "x.csv", lake)


_FAILING_WRITES = """
import hashlib, resource, signal, sys
import pyarrow as pa
from warehouse import output
from warehouse.errors import WarehouseError
fmt, outs = sys.argv[1], sys.argv[2:]
rows = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000 if fmt == "table" else 100000)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))  # writes past 16 KiB fail: a full disk
for out in outs:
    try:
        output.write(pa.table({"s": rows}), fmt, out, sys.stdout)
    except WarehouseError as exc:
        print(exc)
"""


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "table"])
def test_a_write_that_fails_halfway_leaves_no_half_file(tmp_path, fmt):
    existing, new = tmp_path / f"old.{fmt}", tmp_path / f"new.{fmt}"
    existing.write_text("old\n")
    done = subprocess.run(
        [sys.executable, "-c", _FAILING_WRITES, fmt, str(existing), str(new)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert [line.split(": ", 1)[0] for line in done.stdout.splitlines()] == [
        f"could not write --out {existing}",
        f"could not write --out {new}",
    ]
    assert existing.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing.name]  # no half file, no temporary file


def test_write_replaces_the_file_and_keeps_its_mode(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("old\n")
    out.chmod(0o640)
    output.write(pa.table({"a": [1, 2]}), "csv", str(out), sys.stdout)
    assert out.read_text().split() == ["a", "1", "2"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.json"
    output.write(pa.table({"a": [1]}), "json", fresh, sys.stdout)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.json", "r.csv"]


# --- --timeout -----------------------------------------------------------------------------------
def test_timeout_interrupts_a_long_query():
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"query stopped after --timeout 0.5 s; narrow it") as caught:
        run_statements(memory(), [SLOW_SQL], timeout=0.5)
    assert not isinstance(caught.value, QueryAbandoned)
    assert time.monotonic() - started < 0.5 + GRACE_S + 3
    assert run_statements(memory(), ["SELECT 41", "SELECT 42 AS x"], timeout=30).to_pylist() == [{"x": 42}]


def test_timeout_gives_up_on_a_statement_blocked_in_io(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it blocks inside DuckDB, where no interrupt reaches
    started = time.monotonic()
    try:
        with pytest.raises(
            QueryAbandoned, match=r"query gave up after --timeout 0.5 s: it did not stop"
        ) as caught:
            run_statements(memory(), [f"SELECT * FROM read_text('{fifo}')"], timeout=0.5)
        assert time.monotonic() - started < 0.5 + GRACE_S + 3
        assert len(str(caught.value).splitlines()) == 1
    finally:
        release_abandoned(fifo)


_ABANDONING_PROCESS = """
import contextlib, sys, duckdb
from warehouse.query import QueryAbandoned, run_statements

@contextlib.contextmanager
def connection():
    con = duckdb.connect(config={"threads": 2})  # the Python thread polls while a DuckDB thread blocks
    try:
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()

try:
    run_statements(connection, [f"SELECT * FROM read_text('{sys.argv[1]}')"], timeout=0.3)
except QueryAbandoned as exc:
    print(exc)
    sys.exit(1)
"""


def test_a_process_that_abandoned_a_query_still_exits_cleanly(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _ABANDONING_PROCESS, str(tmp_path / "fifo")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # not SIGABRT from DuckDB's thread unwinding at exit
    assert done.stdout.startswith("query gave up after --timeout 0.3 s") and done.stderr == ""
    assert time.monotonic() - started < 30


# --- the CLI on a real warehouse -----------------------------------------------------------------
@pytest.fixture()
def lake(tmp_path):
    wh.open_warehouse(tmp_path / "w").close()
    return tmp_path / "w"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def fails_with(result, text):
    assert result.exit_code != 0
    assert text in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of the warehouse but SQLite's -wal/-shm (which readers touch) and its hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def test_cli_refuses_an_out_inside_the_warehouse_before_running(lake, tmp_path):
    before = snapshot(lake)
    (tmp_path / "link.csv").symlink_to(lake / "catalog.sqlite")
    would_fail = "SELECT * FROM read_text('/nonexistent/file.txt')"  # refused before this could fail
    for out in [
        lake / "catalog.sqlite",
        lake / "codi-warehouse.json",
        lake / "data" / "q.csv",
        tmp_path / "x" / ".." / "w" / "q.csv",
        tmp_path / "link.csv",
    ]:
        fails_with(
            invoke("query", would_fail, "--format", "csv", "--out", out, "--db", lake),
            "is inside the warehouse",
        )
    assert snapshot(lake) == before
    saved = invoke(
        "query",
        "SELECT count(*) AS n FROM runs",
        "--format",
        "csv",
        "--out",
        tmp_path / "n.csv",
        "--db",
        lake,
    )
    assert saved.exit_code == 0, saved.output
    assert (tmp_path / "n.csv").read_text().split() == ["n", "0"]


def test_cli_refuses_what_writes_files_and_runs_nothing(lake, tmp_path):
    logs = tmp_path / "logs"
    for sql in [
        f"CALL enable_logging(storage='file', storage_path='{logs}'); SELECT count(*) FROM runs",
        f"SELECT * FROM enable_logging(storage='file', storage_path='{logs}')",
        "SELECT * FROM ducklake_expire_snapshots(current_database(), older_than => now())",
        "CALL ducklake_cleanup_old_files(current_database(), cleanup_all => true)",
    ]:
        fails_with(invoke("query", sql, "--db", lake), "query is read-only: table function")
    assert not logs.exists()


def test_cli_reads_the_catalog_and_local_files(lake, tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n2\n")
    for sql in [
        "PRAGMA show_tables",
        "CALL pragma_table_info('runs')",
        "DESCRIBE runs",
        "SELECT count(*) FROM ducklake_snapshots(current_database())",
        f"SELECT sum(x) FROM '{tmp_path}/a.csv'",
        f"SELECT count(*) FROM read_csv('{tmp_path}/a.csv')",
    ]:
        done = invoke("query", sql, "--format", "csv", "--db", lake)
        assert done.exit_code == 0, (sql, done.output)


def test_cli_timeout_stops_a_long_query(lake):
    started = time.monotonic()
    fails_with(
        invoke("query", SLOW_SQL, "--timeout", "0.5", "--db", lake), "query stopped after --timeout 0.5 s"
    )
    assert time.monotonic() - started < 0.5 + GRACE_S + 5


def test_cli_timeout_returns_from_a_query_blocked_in_io(lake, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    command = [
        sys.executable,
        "cli.py",
        "query",
        f"SELECT * FROM read_text('{tmp_path / 'fifo'}')",
        "--timeout",
        "0.5",
        "--db",
        str(lake),
    ]
    started = time.monotonic()
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "query gave up after --timeout 0.5 s" in done.stderr and "terminate" not in done.stderr
    assert elapsed < 0.5 + GRACE_S + 20  # the rest is starting Python and opening the warehouse


def test_cli_keeps_duckdbs_help_and_runs_every_read(lake):
    fails_with(
        invoke("query", "SELECT * FROM token_importanc", "--db", lake), 'Did you mean "token_importance"?'
    )
    fails_with(invoke("query", "SELECT methd FROM results", "--db", lake), "Candidate bindings: ")
    for sql in [
        "PIVOT (SELECT 'a' AS m UNION ALL SELECT 'b') ON m USING count(*)",
        "PIVOT results ON method USING count(*)",
        "UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v",
        "SUMMARIZE results",
        "DESCRIBE results",
        "EXPLAIN SELECT 1",
        "EXPLAIN ANALYZE SELECT 1",
        "FROM results LIMIT 1",
        "SHOW TABLES",
    ]:
        done = invoke("query", sql, "--format", "csv", "--db", lake)
        assert done.exit_code == 0, (sql, done.output)
