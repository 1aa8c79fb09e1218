"""The store API on real DuckDB files: commits, resume, immutability, delete, lineage."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import warehouse as wh
from warehouse.bench import sample_problem
from warehouse.errors import RunClosed, UnknownRun, WarehouseError

SMALL = {"n_layers": 2, "n_heads": 2}  # 43 x 2 x 2 x 35 = 6,020 attention rows per problem


@pytest.fixture()
def store(tmp_path):
    return wh.open_warehouse(tmp_path / "w.duckdb")


def fetch(store, sql, params=None):
    with store.reader() as con:
        return con.execute(sql, params or []).fetchall()


def append(store, run_id, indices, **kw):
    for i in indices:
        store.append_problem(run_id, *sample_problem(i, **SMALL, **kw))


def test_rows_come_back_exactly(store):
    run = store.begin_run({"seed": 1})
    row, results, attention = sample_problem(7, **SMALL)
    store.append_problem(run, row, results, attention)
    with store.reader() as con:
        got = con.sql("SELECT condition_id, layer, head, dst, src, weight FROM attention "
                      "WHERE run_id = ? AND problem_id = ? ORDER BY ALL", params=[run, row["problem_id"]]).to_arrow_table()
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE attention)").fetchall())
        res = con.execute("SELECT count(*), count(*) FILTER (method = 'baseline' AND layer IS NULL) FROM results "
                          "WHERE run_id = ?", [run]).fetchall()[0]
    want = attention.sort_by([(c, "ascending") for c in ["condition_id", "layer", "head", "dst", "src", "weight"]])
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


def test_finish_compacts_without_changing_rows(store):
    run = store.begin_run({})
    append(store, run, range(5))
    query = "SELECT problem_id, condition_id, layer, head, dst, src, weight FROM attention ORDER BY ALL"
    before = fetch(store, query)
    store.finish_run(run)
    assert fetch(store, query) == before
    assert [p.name for p in store.shards.run_dir(run).iterdir()] == ["b0000000-compacted"]
    assert store.row_counts(run) == {"results": 5 * 43, "attention": 5 * 6020, "run_problems": 5, "problems": 0}


def test_batch_append_validates_its_frames(store):
    run = store.begin_run({})
    rows, results, attention = zip(*(sample_problem(i, **SMALL) for i in range(3)))

    def tagged(tables, ids):
        return pa.concat_tables([t.append_column("problem_id", pa.array([p] * t.num_rows)) for t, p in zip(tables, ids)])

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
    counts = ("SELECT (SELECT count(*) FROM results WHERE run_id = $1), (SELECT count(*) FROM attention "
              "WHERE run_id = $1), (SELECT count(*) FROM run_problems WHERE run_id = $1), "
              "(SELECT count(*) FROM runs WHERE run_id = $1)")
    kept_before = fetch(store, counts, [keep])
    problems_before = fetch(store, "SELECT count(*) FROM problems")
    removed = store.delete_run(drop)
    assert removed["attention"] == 3 * 6020 and removed["results"] == 3 * 43
    assert fetch(store, counts, [drop]) == [(0, 0, 0, 0)]
    assert fetch(store, counts, [keep]) == kept_before == [(2 * 43, 2 * 6020, 2, 1)]
    assert fetch(store, "SELECT count(*) FROM problems") == problems_before  # problems are shared, kept
    assert not store.shards.run_dir(drop).exists()
    assert [p.name for p in store.shards.trash.iterdir()] == []


def test_lineage_is_recorded(store):
    config = {"model_name": "gpt2-tiny", "seed": 5, "methods": ["zero", "gauss"], "sigmas": [0.1, 1.0],
              "patch_layers": [2], "batch_size": 8}
    run = store.begin_run(config, weights_sha256="ab" * 32, n_layers=4, device="cpu", dtype="float32",
                          dataset_name="synthetic", dataset_hash="cd" * 32, n_problems_planned=10)
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


def test_torn_batch_is_dropped_on_resume(store):
    run = store.begin_run({})
    append(store, run, [1, 2, 3])
    last = max(store.shards.run_dir(run).iterdir())
    (last / "attention.parquet").write_bytes(b"PAR1 torn by a power loss")
    reopened = wh.open_warehouse(store.path)
    assert reopened.resume_run(run) == {"gen0000000000001", "gen0000000000002"}
    append(reopened, run, [3])
    reopened.finish_run(run)
    assert fetch(store, "SELECT count(*), count(DISTINCT problem_id) FROM attention") == [(3 * 6020, 3)]


def test_interrupted_compaction_swap_is_recovered(store):
    run = store.begin_run({})
    append(store, run, [1, 2])
    staged = store.shards.compact(run)
    os.rename(store.shards.run_dir(run), store.shards.staging / "old")  # the crash: between the two renames
    assert not store.shards.run_dir(run).exists()
    reopened = wh.open_warehouse(store.path)
    assert reopened.shards.run_dir(run).is_dir() and not (staged / run).exists()
    assert fetch(store, "SELECT count(*) FROM run_problems WHERE run_id = ?", [run])[0][0] == 2
