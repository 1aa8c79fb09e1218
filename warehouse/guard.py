"""The read-only guard of `python cli.py query` and `Warehouse.sql`: SQL checked before it runs, then timed.

Read-only by what a statement does: the connection is read-only, and every statement is checked with
DuckDB's own parser before anything runs (`check_read_only`). Every read passes; what writes, attaches,
installs or loads extensions, changes settings, exports or runs unchecked SQL is refused:

- Every query passes: SELECT, WITH, FROM-first (`FROM results LIMIT 1`), VALUES, DESCRIBE, SHOW,
  SUMMARIZE, UNPIVOT and PIVOT, with or without an IN list, also inside subqueries and CTEs. A PIVOT
  without an IN list is the one read DuckDB expands into several statements (CREATE TYPE of an ENUM
  of the values, which DuckDB makes itself and a read-only connection allows, then the SELECT); it
  passes when those are all its parts, and is checked as the same PIVOT with an IN list added to each
  ON item (same sources and functions), plus a scan of its tokens for the refused function names
  below. The same expansion under CREATE, COPY, INSERT (a write) or EXPLAIN (which would show
  nothing) is refused.
- The table functions a query uses, wherever they appear (FROM, joins, subqueries, CTEs, arguments),
  are on the allowlist READ_ONLY_TABLE_FUNCTIONS: local files (read_csv, read_parquet, read_json,
  glob, read_text, `FROM 'file.csv'`), generators, catalog listings and DuckLake's read functions.
  Refused: anything that writes or changes settings (checkpoint, enable_logging,
  ducklake_expire_snapshots, ...), runs SQL from a string that cannot be checked (query, query_table,
  json_execute_serialized_sql) or reaches another database (sqlite_query, postgres_execute, ...);
  and the scalar function write_log.
- PRAGMA only for the names in READ_ONLY_PRAGMAS (checked on the tokens before DuckDB parses the SQL:
  parsing `PRAGMA import_database` already reads the files it names); CALL only for a function of
  READ_ONLY_TABLE_FUNCTIONS (`CALL pragma_table_info('results')`); EXPLAIN [ANALYZE] only of a
  statement that passes itself (binding or running it is what EXPLAIN does).
- Every other statement is refused: INSERT, UPDATE, DELETE, MERGE, CREATE, ALTER, DROP, COPY, EXPORT,
  ATTACH, DETACH, INSTALL, LOAD, SET, RESET, USE, CHECKPOINT, VACUUM, ANALYZE, PREPARE, EXECUTE,
  transactions.
Refusals are one line: `query is read-only: ... refused; what to do`. DuckDB's own errors are one line
too, and whole: its lines joined with " | " (`Catalog Error: Table with name token_importanc does not
exist! | Did you mean "token_importance"? | LINE 1: ...`, `Candidate bindings: ...`), only the caret
line left out. The statements are cut at DuckDB's `;` tokens and each is parsed alone. `--out` may
never name the warehouse folder or anything inside it.

`timeout` (the CLI's `--timeout SECONDS`) bounds the wall time from taking the reader connection
to holding the whole result (opening the warehouse before has its own timeouts; writing --out after is
not counted). The statements run in a daemon thread; at the timeout the caller's thread calls DuckDB's
`interrupt`, again every 0.1 s, for up to GRACE_S (2 s) more. What that can and cannot stop:
- Stopped (QueryTimeout, "query stopped after --timeout"): anything DuckDB executes in its pipelines,
  which check the interrupt between chunks of work: scans of the lake's Parquet files and of local
  files, joins (a cross join of range(10^12) stops in well under a second), aggregates, sorts,
  window functions, sleep_ms; also a timeout that passes between two statements (the next one is
  not started).
- Not stopped: a statement blocked inside one system or library call that never checks the flag.
  Verified: read_text on a FIFO that has no writer (it blocks in open()). The same holds for reads
  from a hung network file system, a pipe or a device, waits inside the catalog's SQLite or
  PostgreSQL client (busy timeouts, network), and a long planning or optimizer step before execution
  starts. After GRACE_S the caller gets QueryAbandoned (a QueryTimeout, "query gave up after
  --timeout") anyway; the statement keeps running in its daemon thread, holding its read-only
  connection (never closed under it), until it returns or the process ends. Python cannot finalize
  while such a thread is inside DuckDB (its thread, woken at shutdown, unwinds through DuckDB's C++
  frames and the runtime aborts with SIGABRT), so a process that still has one at exit ends through
  `os._exit(1)` after flushing stdout and stderr (what the CLI exits with after a timeout anyway).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from warehouse.errors import WarehouseError

GRACE_S = 2.0  # how long an interrupted statement gets to return before it is abandoned


def _names(text: str) -> frozenset[str]:
    """The names in `text`, several a line; `#` starts a comment."""
    return frozenset(word for line in text.splitlines() for word in line.split("#", 1)[0].split())


# PRAGMA names that only read; each expands (when DuckDB parses it) to a SELECT that is checked in
# turn. Not here though it exists: `show` (`PRAGMA show('t')` is a syntax error in 1.5.5; use DESCRIBE
# or CALL pragma_show('t')), and every pragma that writes, imports, profiles or changes settings.
READ_ONLY_PRAGMAS = _names("""
collations database_list database_size extension_versions functions metadata_info
platform show_databases show_tables show_tables_expanded storage_info table_info
user_agent version
""")

# Table functions (and table macros) that only read, for FROM and CALL; checked against
# duckdb_functions() of duckdb 1.5.5 and the ducklake extension by tests/test_query_guard.py.
READ_ONLY_TABLE_FUNCTIONS = _names("""
# local files: it is a local tool
glob read_blob read_csv read_csv_auto read_duckdb read_json read_json_auto
read_json_objects read_json_objects_auto read_ndjson read_ndjson_auto
read_ndjson_objects read_parquet read_text parquet_bloom_probe parquet_file_metadata
parquet_full_metadata parquet_kv_metadata parquet_metadata parquet_scan parquet_schema
sniff_csv
# generators and helpers
generate_series histogram histogram_values json_each json_tree range repeat
repeat_row summary test_all_types test_vector_types unnest
# catalog and system listings
duckdb_approx_database_count duckdb_columns duckdb_connection_count duckdb_constraints
duckdb_coordinate_systems duckdb_databases duckdb_dependencies duckdb_extensions
duckdb_external_file_cache duckdb_functions duckdb_indexes duckdb_keywords
duckdb_log_contexts duckdb_logs duckdb_logs_parsed duckdb_memory duckdb_optimizers
duckdb_prepared_statements duckdb_profiling_settings duckdb_schemas duckdb_secret_types
duckdb_secrets duckdb_sequences duckdb_settings duckdb_table_sample duckdb_tables
duckdb_temporary_files duckdb_types duckdb_variables duckdb_views icu_calendar_names
pg_timezone_names which_secret
pragma_collations pragma_database_size pragma_metadata_info pragma_platform pragma_show
pragma_storage_info pragma_table_info pragma_user_agent pragma_version
# DuckLake's reads (its maintenance functions write the lake)
ducklake_current_snapshot ducklake_last_committed_snapshot ducklake_list_files
ducklake_options ducklake_settings ducklake_snapshots ducklake_table_changes
ducklake_table_deletions ducklake_table_info ducklake_table_insertions
""")

# Why some functions are refused, for the message; any other one off the allowlist is refused too.
_WHY = {
    name: why
    for why, names in {
        "it changes logging or profiling and can write files": """enable_logging disable_logging
            truncate_duckdb_logs enable_profiling disable_profiling""",
        "it writes the database": "checkpoint force_checkpoint",
        "it runs SQL given as a string, which cannot be checked": (
            "query query_table json_execute_serialized_sql"
        ),
        "it changes the lake": """ducklake_add_data_files ducklake_cleanup_old_files ducklake_commit
            ducklake_delete_orphaned_files ducklake_expire_snapshots ducklake_flush_inlined_data
            ducklake_merge_adjacent_files ducklake_rewrite_data_files ducklake_set_commit_message
            ducklake_set_option set_option""",
        "it reaches a database outside these checks": """sqlite_attach sqlite_query postgres_attach
            postgres_execute postgres_query postgres_configure_pool pg_clear_cache""",
        "it writes to the log": "write_log",
    }.items()
    for name in names.split()
}
_REFUSED_SCALARS = frozenset(_WHY)  # none is a scalar function that only reads
_READS = "read the warehouse views with SELECT, or files with read_csv/read_parquet/read_json"


def _one_line(exc: BaseException) -> str:
    """DuckDB's whole message on one line: its help (`Did you mean "x"?`, `Candidate bindings: ...`)
    and the `LINE 1: ...` context joined with " | "; the caret line under the context is left out."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and line.strip("^ ")]
    return " | ".join(kept) if kept else type(exc).__name__


def _refuse(what: str, advice: str) -> WarehouseError:
    return WarehouseError(f"query is read-only: {what} refused; {advice}")


# --- the statement check ---------------------------------------------------------------------------
def _lexeme(text: str) -> str:
    """The token at the start of `text` (a slice from one token to the next), without what follows."""
    if text.startswith('"'):
        end = 1
        while end < len(text):
            if text[end] == '"':
                if text[end + 1 : end + 2] != '"':
                    return text[1:end].replace('""', '"')
                end += 1
            end += 1
        return text[1:]
    word = text.split(None, 1)[0] if text.strip() else ""
    for comment in ("--", "/*"):
        if comment in word[1:]:
            word = word[: word.index(comment, 1)]
    return word


def _tokens(sql: str) -> list[tuple[int, str, str]]:
    """(position, text, kind) of each token by DuckDB's tokenizer; comments are left out."""
    try:
        found = duckdb.tokenize(sql)
    except (duckdb.Error, RuntimeError) as exc:
        raise WarehouseError(f"bad SQL: {_one_line(exc)}") from exc
    ends = [position for position, _ in found[1:]] + [len(sql)]
    return [
        (position, _lexeme(sql[position:end]), getattr(kind, "name", str(kind)))
        for (position, kind), end in zip(found, ends, strict=False)  # empty SQL: no tokens, one end
    ]


def _check_pragmas(sql: str) -> None:
    """Every PRAGMA names a pragma of READ_ONLY_PRAGMAS (before parsing: that runs some pragmas)."""
    tokens = _tokens(sql)
    for i, (_, text, kind) in enumerate(tokens):
        if kind != "keyword" or text.lower() != "pragma":
            continue
        before = tokens[i - 1][1].lower() if i else ";"
        if before not in (";", "explain", "analyze", "analyse", ")"):  # a column named pragma
            continue
        name = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        qualified = i + 2 < len(tokens) and tokens[i + 2][1] == "."
        if qualified or name.lower() not in READ_ONLY_PRAGMAS:
            raise _refuse(
                f"PRAGMA {name}",
                "the pragmas that only read are "
                f"{', '.join(sorted(READ_ONLY_PRAGMAS))}; or use SELECT, DESCRIBE or SHOW",
            )


def _extract(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    try:
        return con.extract_statements(sql)
    except duckdb.Error as exc:
        raise WarehouseError(f"bad SQL: {_one_line(exc)}") from exc


def _functions(node: object, tables: set[str], scalars: set[str]) -> None:
    """The names of the table functions and of the other functions anywhere in a parsed tree."""
    if isinstance(node, dict):
        if node.get("type") == "TABLE_FUNCTION":
            name = (node.get("function") or {}).get("function_name")
            tables.add(name.lower() if isinstance(name, str) else "?")
        elif node.get("class") == "FUNCTION":
            name = node.get("function_name")
            scalars.add(name.lower() if isinstance(name, str) else "?")
        for value in node.values():
            _functions(value, tables, scalars)
    elif isinstance(node, list):
        for value in node:
            _functions(value, tables, scalars)


def _check_select(con: duckdb.DuckDBPyConnection, sql: str, shown: str) -> None:
    """Refuse a SELECT that uses a table function off the allowlist, or a refused scalar function."""
    row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    assert row is not None  # a SELECT of one expression without FROM always returns one row
    tree = json.loads(row[0])
    if tree.get("error") or len(tree.get("statements") or []) != 1:
        reason = tree.get("error_message") or "not one statement"
        raise _refuse(f"{shown} (could not be checked: {reason})", "write it as a plain SELECT")
    tables: set[str] = set()
    scalars: set[str] = set()
    _functions(tree["statements"][0], tables, scalars)
    for name in sorted(tables - READ_ONLY_TABLE_FUNCTIONS):
        why = _WHY.get(name, "it is not on the list of table functions that only read")
        raise _refuse(f"table function {name}() ({why})", _READS)
    for name in sorted(scalars & _REFUSED_SCALARS):
        raise _refuse(f"function {name}() ({_WHY[name]})", _READS)


def _explained(sql: str) -> str:
    """The statement an EXPLAIN [ANALYZE] [(options)] statement explains."""
    tokens = _tokens(sql)
    i = 1
    while i < len(tokens) and tokens[i][2] == "keyword" and tokens[i][1].lower() in ("analyze", "analyse"):
        i += 1
    if i < len(tokens) and tokens[i][1] == "(":
        depth = 0
        while i < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[i][1], 0)
            i += 1
            if depth == 0:
                break
    if i >= len(tokens):
        raise WarehouseError("bad SQL: EXPLAIN of nothing")
    return sql[tokens[i][0] :]


def _check_statement(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> None:
    kind = statement.type
    text = statement.query
    if kind == duckdb.StatementType.SELECT:
        _check_select(con, text, "this SELECT")
    elif kind == duckdb.StatementType.CALL:
        tokens = _tokens(text)
        if not tokens or tokens[0][1].lower() != "call":  # CHECKPOINT and FORCE CHECKPOINT are CALLs
            word = " ".join(t[1].upper() for t in tokens[:2] if t[2] == "keyword") or "CALL"
            raise _refuse(f"{word} statements are", "runs are written by `run`, `ingest` and `runs delete`")
        start = tokens[0][0]
        _check_select(con, text[:start] + "SELECT * FROM" + text[start + 4 :], "this CALL")
    elif kind == duckdb.StatementType.EXPLAIN:
        inner = _extract(con, _explained(text))
        if len(inner) != 1:
            raise _refuse("this EXPLAIN (not of one statement)", "EXPLAIN one SELECT")
        _check_statement(con, inner[0])
    elif kind == duckdb.StatementType.PRAGMA:  # every read-only pragma expands to a SELECT
        tokens = _tokens(text)
        name = tokens[1][1] if len(tokens) > 1 else ""
        raise _refuse(
            f"PRAGMA {name}", f"the pragmas that only read are {', '.join(sorted(READ_ONLY_PRAGMAS))}"
        )
    else:
        name = kind.name if kind.name.isidentifier() else (_tokens(text) or [(0, "this", "")])[0][1].upper()
        raise _refuse(f"{name} statements are", "runs are written by `run`, `ingest` and `runs delete`")


_PIVOT_ADVICE = "list the values: PIVOT t ON c IN ('a', 'b')"
_ON_ENDS = frozenset({"using", "group", "order", "limit", "offset", "union", "except", "intersect"})


def _split(sql: str) -> list[str]:
    """The statements of `sql` as text: cut at each `;` token (DuckDB's tokenizer: not in strings or
    comments); those with no token (blank, comments only) are left out."""
    chunks, start = [], 0
    for position, text, kind in _tokens(sql) + [(len(sql), ";", "operator")]:
        if kind == "operator" and text == ";":
            if _tokens(sql[start:position]):
                chunks.append(sql[start:position])
            start = position + 1
    return chunks


def _with_in_lists(sql: str) -> str:
    """`sql` with `IN ('')` after each item of a PIVOT's ON clause that has no IN list: the same
    statement for the check (same sources, functions and tables) that DuckDB parses as one SELECT."""
    tokens = _tokens(sql)
    inserts: list[int] = []
    for i, (_, text, kind) in enumerate(tokens):
        if kind != "keyword" or text.lower() not in ("pivot", "pivot_wider"):
            continue
        depth, j = 0, i + 1
        while j < len(tokens) and not (
            depth == 0 and tokens[j][2] == "keyword" and tokens[j][1].lower() == "on"
        ):
            depth += {"(": 1, ")": -1}.get(tokens[j][1], 0)
            if depth < 0 or tokens[j][1] == ";":
                break
            j += 1
        if j >= len(tokens) or depth != 0 or tokens[j][1].lower() != "on":
            continue  # the SQL-standard form, `FROM t PIVOT (agg FOR c IN (...))`, has its list
        has_in = False
        for k in range(j + 1, len(tokens) + 1):
            position, text, kind = tokens[k] if k < len(tokens) else (len(sql), ";", "operator")
            word = text.lower()
            ends = depth == 0 and (word in (",", ";") or (kind == "keyword" and word in _ON_ENDS))
            if ends or (depth == 0 and word == ")"):
                if not has_in:
                    inserts.append(position)
                has_in = False
                if word != ",":
                    break
                continue
            has_in = has_in or (depth == 0 and kind == "keyword" and word == "in")
            depth += {"(": 1, ")": -1}.get(word, 0)
    for position in sorted(inserts, reverse=True):
        sql = sql[:position] + " IN ('') " + sql[position:]
    return sql


def _check_pivot(con: duckdb.DuckDBPyConnection, text: str, parts: list) -> None:
    """A statement that DuckDB expands into several: only a PIVOT without an IN list (anywhere in a
    query) passes, which is CREATE TYPE (an ENUM of the values, made by DuckDB) then the SELECT."""
    kinds = [part.type for part in parts]
    generated = all(part.query == "" for part in parts)
    Type = duckdb.StatementType
    if generated and kinds[-1] == Type.SELECT and set(kinds[:-1]) == {Type.CREATE}:
        checked = _with_in_lists(text)
        again = _extract(con, checked)
        if len(again) != 1 or again[0].type != Type.SELECT:
            raise _refuse("this PIVOT without an IN list (it could not be checked)", _PIVOT_ADVICE)
        _check_select(con, checked, "this PIVOT")
        tokens = _tokens(text)  # and, whatever the rewrite did, no refused name is called anywhere
        for (_, name, _), (_, after, _) in zip(tokens, tokens[1:], strict=False):
            if after == "(" and name.lower() in _WHY:
                raise _refuse(f"function {name.lower()}() ({_WHY[name.lower()]})", _READS)
        return
    if Type.EXPLAIN in kinds:
        raise _refuse("EXPLAIN of a PIVOT without an IN list (it shows nothing)", _PIVOT_ADVICE)
    word = (_tokens(text) or [(0, "this", "")])[0][1].upper()
    raise _refuse(f"{word} statements are", "runs are written by `run`, `ingest` and `runs delete`")


def check_read_only(sql: str) -> list[str]:
    """The statements of `sql` to run, or a WarehouseError (one line) saying what is refused and why.

    Pure: parses on a private in-memory connection and reads nothing but `sql` (a PRAGMA off the list
    is refused before DuckDB parses it, as parsing `PRAGMA import_database` reads files).
    """
    _check_pragmas(sql)
    con = duckdb.connect()
    try:
        chunks = _split(sql)
        if not chunks:
            raise WarehouseError("no SQL statement given")
        checked: list[str] = []
        for chunk in chunks:
            parts = _extract(con, chunk)
            if len(parts) == 1 and parts[0].query:
                _check_statement(con, parts[0])
                checked.append(parts[0].query)
            elif parts:
                _check_pivot(con, chunk, parts)
                checked.append(chunk.strip())
        if len(_extract(con, sql)) != sum(len(_extract(con, chunk)) for chunk in chunks):
            raise _refuse("these statements (they could not be told apart)", "give one statement at a time")
        return checked
    finally:
        con.close()


read_only_statements = check_read_only  # the former name


# --- running ---------------------------------------------------------------------------------------
class QueryTimeout(WarehouseError):
    """The query ran longer than its timeout and was interrupted."""


class QueryAbandoned(QueryTimeout):
    """The query ran longer than its timeout and did not stop when interrupted: it is left running."""


class _Cancelled(Exception):
    """The timeout passed before the worker started the next statement."""


@dataclass
class _Run:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    con: duckdb.DuckDBPyConnection | None = None
    cancelled: bool = False
    result: pa.Table | None = None
    error: BaseException | None = None

    def check(self) -> None:
        with self.lock:
            if self.cancelled:
                raise _Cancelled

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.con is not None:
                with contextlib.suppress(duckdb.Error):
                    self.con.interrupt()


_abandoned: list[threading.Thread] = []


def _exit_past_abandoned() -> None:
    """At exit, with an abandoned statement still inside DuckDB: end without finalizing (it aborts)."""
    if any(thread.is_alive() for thread in _abandoned):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)


def _abandon(thread: threading.Thread) -> None:
    if not _abandoned:
        atexit.register(_exit_past_abandoned)
    _abandoned.append(thread)


def _stop(run: _Run, grace: float) -> bool:
    """Interrupt the run, again every 0.1 s (one that falls between two calls is lost); whether it ended."""
    deadline = time.monotonic() + grace
    run.cancel()
    while not run.done.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return False
        run.cancel()
    return True


def run_statements(
    open_connection: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
    statements: list[str],
    timeout: float | None = None,
    grace: float = GRACE_S,
) -> pa.Table | None:
    """Run checked `statements` on a connection from `open_connection()` in a daemon thread.

    The result of the last one (None if it returns nothing). Past `timeout` seconds: QueryTimeout,
    after an interrupt, or after `grace` more seconds if the statement does not stop (it is then
    abandoned; see the module docstring).
    """
    run = _Run()

    def work() -> None:
        try:
            with open_connection() as con:
                try:
                    with run.lock:
                        run.con = con
                    for statement in statements[:-1]:
                        run.check()
                        con.execute(statement)
                    run.check()
                    rel = con.sql(statements[-1])
                    run.check()
                    run.result = rel.to_arrow_table() if rel is not None else None
                finally:
                    with run.lock:  # no interrupt once the connection closes
                        run.con = None
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread, raised there)
            run.error = exc
        finally:
            run.done.set()

    thread = threading.Thread(target=work, name="codi-query", daemon=True)
    thread.start()
    try:
        finished = run.done.wait(timeout)
    except KeyboardInterrupt:
        if not _stop(run, grace):
            _abandon(thread)
        raise
    if not finished:
        if not _stop(run, grace):
            _abandon(thread)
            raise QueryAbandoned(
                f"query gave up after --timeout {timeout:g} s: it did not stop within "
                f"{grace:g} s of the interrupt (blocked reading a file, pipe or network, or "
                "planning) and is left to end with this process; check what it reads, narrow "
                "it or give a longer --timeout"
            )
        raise QueryTimeout(
            f"query stopped after --timeout {timeout:g} s; narrow it (filter on run_id, "
            "add LIMIT) or give a longer --timeout"
        )
    if isinstance(run.error, duckdb.Error):
        raise WarehouseError(_one_line(run.error)) from run.error
    if run.error is not None:
        raise run.error
    return run.result
