"""Worker shards (SPEC 12): atomic, idempotent writes; `ingest shards` merges them once, refuses mismatches."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import warehouse as wh
from cli import cli
from ingest.shards import ShardWriter, default_run_id, ingest_shards, write_shard
from warehouse import lineage
from warehouse.bench import sample_problem

CONFIG = {"model": "gpt2-tiny", "seed": 1, "layers": [3], "problem_ids_hash": "h"}
FIELDS = {"config": CONFIG, "n_problems_planned": 6, "model_name": "gpt2-tiny", "weights_sha256": "w" * 64, "seed": 1}
PER_PROBLEM = 43 * 2 * 2 * 35  # attention rows of one sample problem (2 layers, 2 heads)


def rows(indices):
    """Problem rows, results and attention of sample problems, with problem_id columns (one part)."""
    problems, results, attention = [], [], []
    for i in indices:
        row, res, att = sample_problem(i, n_layers=2, n_heads=2)
        problems.append(row)
        results.append(res.append_column("problem_id", pa.array([row["problem_id"]] * res.num_rows)))
        attention.append(att.append_column("problem_id", pa.array([row["problem_id"]] * att.num_rows)))
    return problems, pa.concat_tables(results), pa.concat_tables(attention)


def shard(directory, index, fields=FIELDS, count=3):
    return write_shard(directory, fields, *rows([2 * index, 2 * index + 1]), index=index, count=count)


def fetch(db, sql, params=None):
    with wh.open_warehouse(db, read_only=True).reader() as con:
        return con.execute(sql, params or []).fetchall()


def counts(db):
    return fetch(db, "SELECT (SELECT count(*) FROM results), (SELECT count(*) FROM attention), "
                     "(SELECT count(*) FROM run_problems), (SELECT count(*) FROM runs)")[0]


def test_shards_merge_into_one_complete_run_once(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w.duckdb"
    paths = [shard(out, i) for i in range(3)]
    assert [p.name for p in paths] == ["shard-0000-of-0003", "shard-0001-of-0003", "shard-0002-of-0003"]
    manifest = json.loads((paths[1] / "manifest.json").read_text())
    assert manifest["config_hash"] == lineage.config_hash(CONFIG) and manifest["weights_sha256"] == "w" * 64
    assert manifest["parts"][0]["problem_ids"] == ["gen0000000000002", "gen0000000000003"]
    result = ingest_shards(db, out)
    (run,) = result["runs"]
    assert run["run_id"] == default_run_id(lineage.config_hash(CONFIG))
    assert (run["status"], run["parts_added"], run["problems_committed"]) == ("complete", 3, 6)
    assert counts(db) == (6 * 43, 6 * PER_PROBLEM, 6, 1)
    assert fetch(db, "SELECT status, model_name, config_hash, weights_sha256, n_problems_planned FROM runs")[0] == (
        "complete", "gpt2-tiny", lineage.config_hash(CONFIG), "w" * 64, 6)
    again = CliRunner().invoke(cli, ["ingest", "shards", str(out), "--db", str(db), "--json"])
    assert again.exit_code == 0, again.output
    (run,) = json.loads(again.stdout)["runs"]
    assert (run["parts_added"], run["parts_already_present"], run["status"]) == (0, 3, "complete")
    assert counts(db) == (6 * 43, 6 * PER_PROBLEM, 6, 1)


def test_partial_and_temporary_shards_are_ignored_and_later_shards_complete_the_run(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w.duckdb"
    shard(out, 0)
    shard(out, 2)
    killed = ShardWriter(out, FIELDS, index=1, count=3)  # a worker killed mid-write leaves its temp dir
    killed.append_problems(*rows([2, 3]))
    (out / "shard-0001-of-0003").mkdir()  # and a copy without its manifest is not a shard either
    result = ingest_shards(db, out)
    assert result["runs"][0]["status"] == "running" and result["runs"][0]["problems_committed"] == 4
    assert sorted(result["ignored"]) == sorted([killed.tmp.name, "shard-0001-of-0003"])
    assert counts(db)[2] == 4
    (out / "shard-0001-of-0003").rmdir()
    killed.commit()
    text = CliRunner().invoke(cli, ["ingest", "shards", str(out), "--db", str(db)])
    assert text.exit_code == 0 and "complete" in text.stdout and "1 parts added (2 problems)" in text.stdout
    assert counts(db) == (6 * 43, 6 * PER_PROBLEM, 6, 1)


def test_a_shard_with_another_config_is_refused(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w.duckdb"
    fields = {**FIELDS, "run_id": "array-run-1"}
    shard(out, 0, fields)
    ingest_shards(db, out)
    other = tmp_path / "other"
    shard(other, 1, {**fields, "config": {**CONFIG, "seed": 2}})
    result = CliRunner().invoke(cli, ["ingest", "shards", str(other), "--db", str(db)])
    assert result.exit_code != 0 and "differs from run array-run-1's in the warehouse" in result.output
    assert len(result.output.strip().splitlines()) == 1
    shard(out, 1, {**fields, "config": {**CONFIG, "seed": 2}})  # two configs in one directory
    with pytest.raises(ValueError, match="config_hash .* differs"):
        ingest_shards(db, out)
    assert counts(db)[2] == 2


def test_rewriting_a_shard_is_idempotent_and_writes_are_atomic(tmp_path):
    out = tmp_path / "shards"
    first = shard(out, 0)
    before = (first / "manifest.json").read_text()
    assert shard(out, 0) == first and (first / "manifest.json").read_text() == before  # a retried worker
    with pytest.raises(ValueError, match="already exists for another run"):
        shard(out, 0, {**FIELDS, "config": {**CONFIG, "seed": 9}})
    with pytest.raises(RuntimeError), ShardWriter(out, FIELDS, index=1, count=3) as writer:
        writer.append_problems(*rows([2, 3]))
        raise RuntimeError("worker crashed")
    assert sorted(p.name for p in out.iterdir()) == ["shard-0000-of-0003"]  # no temp debris, no shard 1
    with pytest.raises(ValueError, match="appears twice"):
        write_shard(out, FIELDS, *rows([4, 4]), index=2, count=3)
    with pytest.raises(TypeError, match="n_problems_planned"):
        write_shard(out, {"config": CONFIG}, *rows([4]), index=2, count=3)


def test_a_torn_shard_is_refused_before_anything_is_added(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w.duckdb"
    path = shard(out, 0)
    results = path / "part-000000" / "results.parquet"
    pq.write_table(pq.read_table(results).slice(0, 5), results)
    with pytest.raises(ValueError, match="5 rows, the manifest says 86"):
        ingest_shards(db, out)
    assert not db.exists() or counts(db) == (0, 0, 0, 0)
