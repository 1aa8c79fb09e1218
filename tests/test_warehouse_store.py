"""The store API on a real DuckLake folder: commits, resume, immutability, delete, damage, lineage."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from faults_helpers import orphan_files

import warehouse as wh
from warehouse import schema
from warehouse.bench import sample_problem
from warehouse.errors import RunClosed, RunDamaged, UnknownRun, WarehouseError

SMALL = {"n_layers": 2, "n_heads": 2}  # 43 x 2 x 2 x 35 = 6,020 attention rows per problem


@pytest.fixture()
def store(tmp_path):
    return wh.open_warehouse(tmp_path / "w")


def fetch(store, sql, params=None):
    with store.reader() as con:
        return con.execute(sql, params or []).fetchall()


def data_files(store) -> dict[str, bytes]:
    """Every Parquet file under the warehouse's data/ folder, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in (store.path / "data").rglob("*.parquet")}


def append(store, run_id, indices, **kw):
    for i in indices:
        store.append_problem(run_id, *sample_problem(i, **SMALL, **kw))


def test_rows_come_back_exactly(store):
    run = store.begin_run({"seed": 1})
    row, results, attention = sample_problem(7, **SMALL)
    store.append_problem(run, row, results, attention)
    with store.reader() as con:
        got = con.sql(
            "SELECT condition_id, layer, head, dst, src, weight FROM attention "
            "WHERE run_id = ? AND problem_id = ? ORDER BY ALL",
            params=[run, row["problem_id"]],
        ).to_arrow_table()
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE attention)").fetchall())
        res = con.execute(
            "SELECT count(*), count(*) FILTER (method = 'baseline' AND layer IS NULL) FROM results "
            "WHERE run_id = ?",
            [run],
        ).fetchall()[0]
    want = attention.sort_by(
        [(c, "ascending") for c in ["condition_id", "layer", "head", "dst", "src", "weight"]]
    )
    assert got.num_rows == want.num_rows == 43 * 4 * 35
    for column in ["condition_id", "dst", "src", "weight"]:
        assert got.column(column).to_pylist() == want.column(column).to_pylist()
    assert types["weight"] == "FLOAT" and types["dst"] == "SMALLINT" and types["layer"] == "SMALLINT"
    assert res == (43, 1)


def test_problems_are_upserted_not_duplicated(store):
    a, b = store.begin_run({}), store.begin_run({})
    append(store, a, [1, 2])
    append(store, b, [2, 3])
    assert fetch(store, "SELECT problem_id, count(*) FROM problems GROUP BY ALL HAVING count(*) > 1") == []
    assert fetch(store, "SELECT count(*) FROM problems")[0][0] == 3
    store.finish_run(a)
    store.finish_run(b)
    assert fetch(store, "SELECT count(*) FROM problems_base")[0][0] == 3
    assert fetch(store, "SELECT count(*) FROM problems")[0][0] == 3
    assert store.upsert_problems([sample_problem(3)[0], sample_problem(4)[0]]) == 1


def test_duplicate_problem_and_closed_runs_are_refused(store):
    run = store.begin_run({})
    append(store, run, [1])
    with pytest.raises(WarehouseError, match="already committed"):
        append(store, run, [1])
    store.finish_run(run)
    with pytest.raises(RunClosed, match="immutable"):
        append(store, run, [2])
    with pytest.raises(RunClosed, match="immutable"):
        wh.open_warehouse(store.path).append_problem(run, *sample_problem(2, **SMALL))  # a fresh process view
    with pytest.raises(RunClosed):
        store.resume_run(run)
    with pytest.raises(RunClosed):
        store.finish_run(run)
    assert fetch(store, "SELECT count(*) FROM run_problems WHERE run_id = ?", [run])[0][0] == 1


def test_failed_run_resumes_and_completes(store):
    run = store.begin_run({})
    append(store, run, [1, 2])
    store.finish_run(run, "failed", error="out of memory")
    assert fetch(store, "SELECT status, error FROM runs")[0] == ("failed", "out of memory")
    with pytest.raises(RunClosed, match="resume"):
        append(store, run, [3])
    assert store.resume_run(run) == {"gen0000000000001", "gen0000000000002"}
    append(store, run, [3])
    store.finish_run(run)
    assert fetch(store, "SELECT status, error FROM runs")[0] == ("complete", None)
    assert fetch(store, "SELECT list(ordinal ORDER BY ordinal) FROM run_problems")[0][0] == [0, 1, 2]


def test_finish_keeps_every_row_and_a_complete_run_is_immutable(store):
    run = store.begin_run({})
    append(store, run, range(5))
    query = "SELECT problem_id, condition_id, layer, head, dst, src, weight FROM attention ORDER BY ALL"
    before, files = fetch(store, query), data_files(store)
    store.finish_run(run)
    assert fetch(store, query) == before
    assert fetch(store, "SELECT status, finished_at IS NOT NULL, error FROM runs") == [
        ("complete", True, None)
    ]
    no_readouts = dict.fromkeys(schema.READOUT_TABLES, 0)  # the run recorded no states, decoding, tokens
    assert store.row_counts(run) == {
        "results": 5 * 43,
        "attention": 5 * 6020,
        "run_problems": 5,
        **no_readouts,
    }
    assert data_files(store) == files  # finishing rewrites no file (there is no compaction)
    fresh = wh.open_warehouse(store.path)  # a later process
    for handle in (store, fresh):
        with pytest.raises(RunClosed, match="immutable"):
            append(handle, run, [5])
        with pytest.raises(RunClosed, match="immutable"):
            handle.append_problems(run, [sample_problem(6)[0]], None)
        with pytest.raises(RunClosed, match="immutable"):
            handle.resume_run(run)
        for status in ("complete", "failed"):
            with pytest.raises(RunClosed, match="not running"):
                handle.finish_run(run, status, error="late")
    assert fetch(store, query) == before
    assert fetch(store, "SELECT status, error FROM runs") == [("complete", None)]
    assert data_files(store) == files


def test_batch_append_validates_its_frames(store):
    run = store.begin_run({})
    rows, results, attention = zip(*(sample_problem(i, **SMALL) for i in range(3)), strict=True)

    def tagged(tables, ids):
        return pa.concat_tables(
            [
                t.append_column("problem_id", pa.array([p] * t.num_rows))
                for t, p in zip(tables, ids, strict=True)
            ]
        )

    ids = [r["problem_id"] for r in rows]
    with pytest.raises(WarehouseError, match="not in the batch"):
        store.append_problems(run, list(rows[:2]), tagged(results, ids), tagged(attention, ids))
    with pytest.raises(ValueError, match="unknown column"):
        store.append_problem(run, rows[0], results[0].append_column("kl_frist", pa.array([0.0] * 43)))
    with pytest.raises(ValueError, match="required column weight"):
        store.append_problem(run, rows[0], results[0], attention[0].drop_columns(["weight"]))
    with pytest.raises(ValueError, match="cannot store"):
        bad = attention[0].set_column(3, "dst", pc.add(attention[0].column("dst").cast(pa.int64()), 100_000))
        store.append_problem(run, rows[0], results[0], bad)
    assert store.committed_problems(run) == set()
    store.append_problems(run, list(rows), tagged(results, ids), tagged(attention, ids))
    assert store.committed_problems(run) == set(ids)
    assert fetch(store, "SELECT count(*) FROM attention")[0][0] == 3 * 6020


def test_resolve_run(store):
    a = store.begin_run({}, run_id="20260101-000000-aaaaaa")
    store.begin_run({}, run_id="20260101-000000-aabbbb")
    c = store.begin_run({}, run_id="20260102-000000-cccccc")
    assert store.resolve_run(a) == a
    assert store.resolve_run("20260102") == c
    assert store.resolve_run("latest") == c
    with pytest.raises(UnknownRun, match="ambiguous"):
        store.resolve_run("20260101-000000-aa")
    with pytest.raises(UnknownRun, match="no run"):
        store.resolve_run("zzz")
    with pytest.raises(WarehouseError, match="already exists"):
        store.begin_run({}, run_id=a)
    for bad in ("../escape", "_empty", "a*b"):
        with pytest.raises(WarehouseError, match="run id"):
            store.begin_run({}, run_id=bad)


def test_delete_removes_every_row_of_the_run_and_nothing_else(store):
    keep, drop = store.begin_run({}), store.begin_run({})
    append(store, keep, [1, 2])
    append(store, drop, [2, 3, 4])
    store.finish_run(keep)
    counts = (
        "SELECT (SELECT count(*) FROM results WHERE run_id = $1), (SELECT count(*) FROM attention "
        "WHERE run_id = $1), (SELECT count(*) FROM run_problems WHERE run_id = $1), "
        "(SELECT count(*) FROM runs WHERE run_id = $1)"
    )
    kept_before = fetch(store, counts, [keep])
    problems_before = fetch(store, "SELECT count(*) FROM problems")
    files = data_files(store)
    dropped = [
        p for table in ("results", "attention", "run_problems") for p in listed_files(store, drop, table)
    ]
    assert len(dropped) == 3 * 3  # one file per table and commit
    removed = store.delete_run(drop)
    assert removed["attention"] == 3 * 6020 and removed["results"] == 3 * 43
    assert fetch(store, counts, [drop]) == [(0, 0, 0, 0)]
    assert fetch(store, counts, [keep]) == kept_before == [(2 * 43, 2 * 6020, 2, 1)]
    assert fetch(store, "SELECT count(*) FROM problems") == problems_before  # problems are shared, kept
    assert data_files(store) == files  # the rows left the snapshot; the files stay for time travel
    assert listed_files(store, drop) == [] and listed_files(store, keep) != []
    assert not (store.path / "locks" / f"{drop}.lock").exists()
    assert store.vacuum(older_than_days=0)["files_removed"] == len(dropped)  # vacuum reclaims them, only them
    assert set(data_files(store)) == set(files) - {p.name for p in dropped}
    assert fetch(store, counts, [keep]) == kept_before
    assert store.damaged_files() == {}


def test_lineage_is_recorded(store):
    config = {
        "model_name": "gpt2-tiny",
        "seed": 5,
        "methods": ["zero", "gauss"],
        "sigmas": [0.1, 1.0],
        "patch_layers": [2],
        "batch_size": 8,
    }
    run = store.begin_run(
        config,
        weights_sha256="ab" * 32,
        n_layers=4,
        device="cpu",
        dtype="float32",
        dataset_name="synthetic",
        dataset_hash="cd" * 32,
        n_problems_planned=10,
    )
    shown = store.show_run(run)
    assert shown["status"] == "running" and shown["started_at"] is not None
    assert shown["config_json"] == config and len(shown["config_hash"]) == 64
    assert (shown["model_name"], shown["seed"], shown["patch_layers"]) == ("gpt2-tiny", 5, [2])
    assert shown["methods"] == ["zero", "gauss"] and shown["sigmas"] == [0.1, 1.0]
    assert shown["library_versions"]["duckdb"] and shown["code_version"]
    assert shown["convention"] == "codi"
    same = store.begin_run(dict(reversed(list(config.items()))))
    assert store.show_run(same)["config_hash"] == shown["config_hash"]  # key order does not matter
    with pytest.raises(TypeError, match="unknown field"):
        store.begin_run(config, weights="x")
    legacy = store.begin_run({}, convention="legacy", parent_run_id=run)
    assert json.loads(json.dumps(store.show_run(legacy), default=str))["convention"] == "legacy"


def problem_ids(*indices):
    return {sample_problem(i)[0]["problem_id"] for i in indices}


def listed_files(store, run_id, table="attention"):
    return [Path(p) for t, p, _size, r in store._data_files([run_id]) if t == table and r == run_id]


def tear(store, damage: str):
    """Two runs; the attention file of `run`'s third commit torn as `damage` says. Returns run, other,
    the file, its original bytes and the words damaged_files() must use."""
    run, other = store.begin_run({}), store.begin_run({})
    append(store, run, [1, 2, 3])  # three commits: three attention files
    append(store, other, [1])
    store.finish_run(other)
    target = next(
        p
        for p in listed_files(store, run)
        if set(pq.read_table(p).column("problem_id").to_pylist()) == problem_ids(3)
    )
    original = target.read_bytes()
    if damage == "truncated":  # a power loss with durable=False, or a bad copy
        target.write_bytes(original[: len(original) // 2])
        return run, other, target, original, "truncated"
    target.write_bytes(original[:-16] + b"\xff" * 8 + original[-8:])  # bit rot in the footer: same size
    return run, other, target, original, "corrupt Parquet"


@pytest.mark.parametrize("damage", ["truncated", "footer"])
def test_a_torn_file_is_reported_and_nothing_on_disk_is_removed(store, damage):
    run, other, target, original, why = tear(store, damage)
    torn = data_files(store)

    bad = store.damaged_files()
    assert list(bad) == [run] and len(bad[run]) == 1
    found = bad[run][0]
    assert (found.run_id, found.table, Path(found.path)) == (
        run,
        "attention",
        target,
    ) and why in found.problem
    with pytest.raises(
        RunDamaged, match=f"run {run} has an unreadable data file, .*{target.name}.*runs delete"
    ):
        store.check_runs([run])
    store.check_runs([other])  # the other run is unaffected (this would raise)
    assert store.damaged_files([other]) == {}

    reopened = wh.open_warehouse(store.path)  # opening for writing removes nothing
    assert reopened.resume_run(run) == problem_ids(
        1, 2, 3
    )  # the torn commit is not dropped: it stays committed
    assert {r["run_id"]: r["status"] for r in reopened.list_runs()} == {run: "damaged", other: "complete"}
    assert reopened.show_run(run)["damaged_files"] == [found.line()]
    assert fetch(reopened, "SELECT count(*) FROM attention WHERE run_id = ?", [other]) == [(6020,)]
    append(reopened, run, [4])  # the run goes on; its torn file is neither redone nor removed
    reopened.finish_run(run, "failed", error="stopped")
    after = data_files(store)
    assert {name: after[name] for name in torn} == torn  # every file as it was, the torn one still torn
    assert len(after) == len(torn) + 3  # and the new commit's results, attention and run_problems

    target.write_bytes(original)  # restoring the file restores the run
    assert store.damaged_files() == {}
    assert fetch(
        store, "SELECT count(*), count(DISTINCT problem_id) FROM attention WHERE run_id = ?", [run]
    ) == [(4 * 6020, 4)]


@pytest.mark.parametrize("damage", ["truncated", "footer"])
def test_a_query_that_reads_a_torn_file_names_it_and_its_run(store, damage):
    run, other, target, _original, _why = tear(store, damage)
    for sql in ("SELECT sum(weight) FROM attention", "SELECT sum(weight) FROM attention WHERE run_id = ?"):
        with pytest.raises(RunDamaged, match=f"run {run} has an unreadable data file, .*{target.name}"):
            fetch(store, sql, [run] if "?" in sql else None)
    assert fetch(
        store, "SELECT count(*), sum(weight) IS NOT NULL FROM attention WHERE run_id = ?", [other]
    ) == [(6020, True)]  # the other run's rows stay readable


def test_files_of_a_commit_that_never_happened_are_never_listed_nor_read(store):
    """What SIGKILL leaves mid-commit: the batch's Parquet files on disk, the catalog never told of them."""
    run = store.begin_run({})
    append(store, run, [1, 2])
    committed = fetch(store, "SELECT count(*) FROM attention")
    written = set(data_files(store))
    kept = {}

    def killed(what):  # the commit's files are written: keep copies, then die before COMMIT
        for path in (store.path / "data").rglob("*.parquet"):
            if path.name not in written:
                kept[path] = path.read_bytes()
        raise KeyboardInterrupt

    store._before_commit = killed
    with pytest.raises(KeyboardInterrupt):
        append(store, run, [3])
    del store._before_commit
    assert {p.parent.name for p in kept} == {"results", "attention", "run_problems"}
    for path, body in kept.items():  # as a killed process leaves them (a rollback tidies its own)
        path.write_bytes(body)
    assert orphan_files(store.path) == 3

    reopened = wh.open_warehouse(store.path)
    assert fetch(reopened, "SELECT count(*) FROM attention") == committed  # never read
    assert reopened.damaged_files() == {}
    assert reopened.resume_run(run) == problem_ids(1, 2)
    append(reopened, run, [3])
    reopened.finish_run(run)
    assert fetch(
        reopened,
        "SELECT count(*), count(DISTINCT (problem_id, condition_id, layer, head, dst, src)) FROM attention",
    ) == [(3 * 6020, 3 * 6020)]
    assert fetch(reopened, "SELECT list(ordinal ORDER BY ordinal) FROM run_problems") == [([0, 1, 2],)]
    assert all(path.read_bytes() == body for path, body in kept.items())  # nothing removed them
    assert (
        reopened.vacuum(older_than_days=0)["orphans_removed"] == 0
    )  # younger than a day: may be a commit in flight
    assert orphan_files(store.path) == 3
    old = time.time() - 2 * 86400
    for path in kept:
        os.utime(path, (old, old))
    assert reopened.vacuum(older_than_days=0)["orphans_removed"] == 3
    assert orphan_files(store.path) == 0 and not any(path.exists() for path in kept)
    assert fetch(reopened, "SELECT count(*) FROM attention") == [(3 * 6020,)]
    assert reopened.damaged_files() == {}
