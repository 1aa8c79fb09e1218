"""Bad input through the CLI: each gives one line on stderr that says what is wrong and what to do, a
non-zero exit, no traceback, and leaves no run behind; inputs that are odd but usable (repeated questions)
run, each problem once, with a note.

Elsewhere: SQL that writes, SQL with syntax errors, unknown run ids (tests/test_warehouse_cli.py); bad
dataset lines one by one (tests/test_gsm8k_reader.py, tests/test_ingest_gsm8k.py); --layer out of range
(tests/test_run.py); missing official models (tests/test_checkpoints.py).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import duckdb
import pytest
from faults_helpers import check_run, cli, fetch, user_error

import warehouse as wh
from ingest.datasets import load_problems
from warehouse import lake
from warehouse.migrate import SchemaError
from warehouse.schema import SCHEMA_VERSION

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

QUICK = ["--methods", "zero", "--attention", "none"]
A = {
    "question": "Ann has 3 apples. She buys 4 more. How many apples does she have?",
    "answer": "3+4=<<3+4=7>>7\n#### 7",
}
B = {
    "question": "Ben has 12 coins. He gives away 5. How many coins are left?",
    "answer": "12-5=<<12-5=7>>7\n#### 7",
}
C = {"question": "Cara has 6 books and doubles them. How many books?", "answer": "6*2=<<6*2=12>>12\n#### 12"}


def jsonl(path, *records, raw: bytes = b""):
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + raw)
    return path


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "w"  # a warehouse folder, created by the first command that writes


def no_runs(db) -> bool:
    return not db.exists() or fetch(db, "SELECT count(*) FROM runs") == [(0,)]


# --- datasets ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_dataset(tmp_path, db, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    user_error(cli("run", "--dataset", path, "--db", db), "holds no problems", "JSONL file")
    assert no_runs(db)


def test_repeated_questions_run_once_each_with_a_note(tmp_path, db):
    spaced = {**A, "question": "  ann has 3 apples.   She buys 4 more. How many apples does she have?"}
    path = jsonl(tmp_path / "dup.jsonl", A, B, A, spaced, C)  # the same problem id three times
    out = cli("run", "--dataset", path, *QUICK, "--batch-size", 1, "--db", db)  # before: a crash mid-run
    assert out.exit_code == 0, out.stderr
    assert "note:" in out.stderr and "2 repeated question(s) left out" in out.stderr
    assert "entry 3 repeats entry 1" in out.stderr
    run_id = fetch(db, "SELECT run_id FROM runs")[0][0]
    check_run(db, run_id, 3, 7)
    assert fetch(db, "SELECT n_problems_planned FROM runs") == [(3,)]


def test_repeated_question_with_another_answer_is_refused(tmp_path, db):
    path = jsonl(tmp_path / "conflict.jsonl", A, B, {**A, "answer": "3+5=<<3+5=8>>8\n#### 8"})
    user_error(
        cli("run", "--dataset", path, *QUICK, "--db", db),
        "line 3: same question as line 1 with another answer (8 here, 7 there)",
        "--skip-invalid",
    )
    assert no_runs(db)


def test_repeats_in_a_research_dataset_file(tmp_path):
    record = {"gsm8k_id": "a", "question": A["question"], "answer": 7, "full_solution": A["answer"]}
    path = tmp_path / "research.json"
    path.write_text(json.dumps([record, {**record, "gsm8k_id": "b"}]))
    assert len(load_problems(str(path))) == 1
    path.write_text(
        json.dumps(
            [record, {**record, "gsm8k_id": "b", "answer": 8, "full_solution": "3+5=<<3+5=8>>8\n#### 8"}]
        )
    )
    with pytest.raises(ValueError, match="entry b repeats the question of entry a with another answer"):
        load_problems(str(path))


def test_non_utf8_bytes(tmp_path, db):
    path = jsonl(tmp_path / "bytes.jsonl", A, raw=b'{"question": "Bad \xff\xfe bytes", "answer": "#### 1"}\n')
    user_error(
        cli("run", "--dataset", path, *QUICK, "--db", db),
        "1 malformed line(s), nothing loaded",
        "line 2: not valid UTF-8",
        "--skip-invalid",
    )
    assert no_runs(db)
    out = cli("run", "--dataset", path, "--skip-invalid", *QUICK, "--db", db)  # the good line runs
    assert out.exit_code == 0, out.stderr
    assert fetch(db, "SELECT count(DISTINCT problem_id) FROM results") == [(1,)]
    research = tmp_path / "research.json"
    research.write_bytes(b'[{"gsm8k_id": "x", "question": "caf\xe9", "answer": 1}]')
    user_error(cli("run", "--dataset", research, *QUICK, "--db", db), "not valid UTF-8")


def test_more_problems_than_the_dataset_holds(tmp_path, db):
    path = jsonl(tmp_path / "three.jsonl", A, B, C)
    user_error(
        cli("run", "--dataset", path, "--problems", 10, *QUICK, "--db", db),
        "--problems 10 is more than the 3 distinct problems",
        "ask for at most 3",
    )
    assert no_runs(db)  # before: ran 3 problems and said nothing


def test_missing_dataset(tmp_path, db):
    user_error(cli("run", "--dataset", tmp_path / "nope.jsonl", "--db", db), "dataset file not found")


# --- models, flags and commands ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run", "--model", "gpt3"], ["unknown model 'gpt3'", "gpt2-tiny, gpt2, llama"]),
        (["eval", "--model", "gpt3"], ["unknown model 'gpt3'"]),
        (["run", "--frobnicate"], ["No such option '--frobnicate'", "see 'cli.py run --help'"]),
        (["run", "--methds", "zero"], ["No such option '--methds'", "--methods"]),
        (["frobnicate"], ["No such command 'frobnicate'", "see 'cli.py --help'"]),
        (["runs", "frobnicate"], ["No such command 'frobnicate'"]),
        (["run", "--problems", "0"], ["Invalid value for '--problems'", "x>=1"]),
        (["run", "--batch-size", "many"], ["Invalid value for '--batch-size'"]),
        (["run", "--attention", "some"], ["Invalid value for '--attention'", "'all', 'baseline', 'none'"]),
        (["run", "--methods", "zero,blur"], ["unknown method(s) blur", "choose from zero"]),
        (["run", "--sigmas", "nan"], ["--sigmas must be positive finite numbers"]),
        (["run", "--sigmas", "0.5,inf"], ["--sigmas must be positive finite numbers"]),
        (["run", "--sigmas", "-1"], ["--sigmas must be positive finite numbers"]),
        (["run", "--sigmas", "half"], ["--sigmas must be comma-separated numbers"]),
        (["run", "--device", "tpu"], ["--device must be auto, cpu or cuda"]),
        (["run", "--resume", "nope", "--problems", "2"], ["no run matches 'nope'", "cli.py runs"]),
        (["query", "SELECT 1", "--timeout", "0"], ["Invalid value for '--timeout'"]),
        (["query"], ["give either a SQL statement or --file F"]),
        (["synth", "--n", "3", "--out", "x.jsonl", "--steps", "9"], ["steps range must lie within 1-6"]),
        (
            ["run", "--layers", "all", "--layer", "2"],
            ["give either --layer L or --layers"],
        ),  # before: --layer ignored
        (
            ["eval", "--problems", "0"],
            ["Invalid value for '--problems'"],
        ),  # before: exit 0, nothing evaluated
        (
            ["train", "--steps", "0", "--out", "nowhere"],
            ["Invalid value for '--steps'"],
        ),  # before: saved an untrained model
    ],
)
def test_bad_flags_and_names(db, args, fragments):
    user_error(cli(*args, *(["--db", db] if args[0] in ("run", "query") else [])), *fragments)
    assert no_runs(db)


def test_train_from_a_directory_without_a_model(tmp_path):
    user_error(
        cli("train", "--init-from", tmp_path, "--steps", 1, "--out", tmp_path / "out"),
        "lacks model.safetensors",
    )  # before: a FileNotFoundError traceback


# --- warehouse folders --------------------------------------------------------------------------------
def folder_state(folder) -> dict:
    """Every file of a warehouse folder with its size and bytes' hash, except SQLite's WAL and shared-memory
    files (a reader may create, checkpoint or remove those without changing anything), and the catalog's
    snapshots, read straight from SQLite: the same state means nothing was written."""
    files = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")) and path.name != lake.CATALOG:
            files[str(path.relative_to(folder))] = (
                path.stat().st_size,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    catalog = sqlite3.connect(f"file:{Path(folder) / lake.CATALOG}?mode=ro", uri=True)
    try:
        snapshots = catalog.execute(
            "SELECT snapshot_id, schema_version, next_file_id FROM ducklake_snapshot ORDER BY snapshot_id"
        ).fetchall()
    finally:
        catalog.close()
    return {
        "files": files,
        "snapshots": snapshots,
        "siblings": sorted(p.name for p in Path(folder).parent.iterdir()),
    }


def fetch_raw(folder, sql):
    """Read a warehouse with plain DuckDB and the DuckLake extension (the store refuses a newer one)."""
    con = lake.new_connection(lake.Catalog("sqlite"))
    try:
        lake.attach(con, Path(folder), lake.Catalog("sqlite"), read_only=True)
        return con.execute(sql).fetchall()
    finally:
        con.close()


NEWER = 99  # a schema version from some later program


@pytest.fixture(scope="module")
def newer_warehouse(tmp_path_factory):
    """A warehouse with one complete run whose catalog says a newer program wrote it (schema version 99)."""
    db = tmp_path_factory.mktemp("newer") / "w"
    assert cli("run", "--problems", 1, *QUICK, "--db", db).exit_code == 0
    store = wh.open_warehouse(db)
    with store.cursor() as con:
        con.execute(f"INSERT INTO schema_version VALUES ({NEWER}, now()::TIMESTAMP, 'from the future')")
    store.close()
    return db


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--problems", "1", *QUICK],
        ["query", "SELECT count(*) FROM runs"],
        ["runs"],
        ["runs", "show", "latest"],
        ["runs", "delete", "latest", "--yes"],
        ["stats"],
        ["views"],
        ["ingest", "gsm8k", "data.jsonl"],
    ],
)
def test_warehouse_from_a_newer_schema_is_refused(newer_warehouse, tmp_path, command):
    if command[0] == "ingest":
        command = ["ingest", "gsm8k", str(jsonl(tmp_path / "data.jsonl", A))]
    before = folder_state(newer_warehouse)
    user_error(
        cli(*command, "--db", newer_warehouse),
        f"has schema version {NEWER}, newer than this program's {SCHEMA_VERSION}",
        "upgrade codi-warehouse",
    )
    assert folder_state(newer_warehouse) == before  # not a row, file, snapshot or lock written
    assert fetch_raw(newer_warehouse, "SELECT count(*), min(status) FROM runs") == [(1, "complete")]
    assert fetch_raw(newer_warehouse, "SELECT max(version) FROM schema_version") == [(NEWER,)]


NOT_A_FOLDER = ["is a file, not a warehouse folder", "point --db at a warehouse folder"]


def old_layout_file(path):
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (run_id VARCHAR, status VARCHAR)")
    con.execute("INSERT INTO runs VALUES ('r', 'complete')")
    con.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("garbage.duckdb", bytes(range(256)) * 64, NOT_A_FOLDER),
        ("results.csv", b"run_id,n\na,1\n", NOT_A_FOLDER),
        ("rows.jsonl", json.dumps(A).encode() + b"\n", NOT_A_FOLDER),
        ("old.duckdb", None, ["warehouse file of the old layout", "python cli.py upgrade"]),
    ],
)
@pytest.mark.parametrize("command", [["run", "--problems", "1", *QUICK], ["query", "SELECT 1"], ["runs"]])
def test_db_that_is_a_file(tmp_path, name, content, fragments, command):
    path = tmp_path / name
    if content is None:
        content = old_layout_file(path)
    else:
        path.write_bytes(content)
    # before: DuckDB opened an existing CSV/JSON file as an empty in-memory database, so a run "succeeded"
    # and its runs row vanished
    user_error(cli(*command, "--db", path), *fragments)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing created beside it


@pytest.mark.parametrize(
    "contents, fragment",
    [
        (
            {"notes.txt": b"my notes\n"},
            "is not a codi warehouse (no codi-warehouse.json); point --db at a warehouse",
        ),
        (
            {"data/main/runs/ducklake-1.parquet": b"PAR1"},
            "without their identity file",
        ),  # a catalog's files alone
    ],
)
@pytest.mark.parametrize("command", [["run", "--problems", "1", *QUICK], ["query", "SELECT 1"], ["runs"]])
def test_db_that_is_a_folder_but_not_a_warehouse(tmp_path, contents, fragment, command):
    folder = tmp_path / "mine"
    for rel, body in contents.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    before = {
        str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")
    }
    user_error(cli(*command, "--db", folder), fragment)
    # never adopted: nothing written into it, nothing created beside it
    assert {
        str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")
    } == before


# --- queries -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory):
    db = tmp_path_factory.mktemp("query") / "w"
    assert cli("run", "--problems", 1, *QUICK, "--db", db).exit_code == 0
    return db


def test_query_that_would_run_for_minutes_stops_at_the_timeout(small_warehouse):
    started = time.monotonic()
    slow = "SELECT count(*) FROM range(1000000000000) a, results"  # hours of work
    user_error(
        cli("query", slow, "--timeout", "0.5", "--db", small_warehouse),
        "query stopped after --timeout 0.5 s",
        "narrow it",
        "longer --timeout",
    )
    assert time.monotonic() - started < 20
    out = cli(
        "query",
        "SELECT count(*) AS n FROM results",
        "--timeout",
        "30",
        "--format",
        "csv",
        "--db",
        small_warehouse,
    )
    assert out.exit_code == 0 and out.stdout.split() == ["n", "7"]


@pytest.mark.parametrize(
    "sql, fragment",
    [
        ("INSERT INTO runs (run_id, status) VALUES ('x', 'complete')", "read-only: INSERT"),
        ("UPDATE runs SET status = 'failed'", "read-only: UPDATE"),
        ("SELECT 1; DELETE FROM runs", "read-only: DELETE"),
        ("ATTACH 'other.duckdb' AS o", "read-only: ATTACH"),
        ("SELECT * FROM read_parquet('/nonexistent/*.parquet')", "No files found"),
        ("SELECT count(*) FROM results WHERE", "syntax error"),
    ],
)
def test_sql_that_writes_or_does_not_parse(small_warehouse, sql, fragment):
    user_error(cli("query", sql, "--db", small_warehouse), fragment)
    assert fetch(small_warehouse, "SELECT count(*), min(status) FROM runs") == [(1, "complete")]


def test_sql_file_with_non_utf8_bytes(small_warehouse, tmp_path):
    path = tmp_path / "q.sql"
    path.write_bytes(b"SELECT '\xff'")
    user_error(
        cli("query", "--file", path, "--db", small_warehouse), "is not UTF-8 text", "save the SQL file"
    )


def test_the_store_refuses_a_newer_file_even_read_only(newer_warehouse):
    assert NEWER > SCHEMA_VERSION
    before = folder_state(newer_warehouse)
    for read_only in (True, False):  # before: read-only opens went ahead
        with pytest.raises(SchemaError, match=f"schema version {NEWER}, newer"):
            wh.open_warehouse(newer_warehouse, read_only=read_only)
    assert folder_state(newer_warehouse) == before
