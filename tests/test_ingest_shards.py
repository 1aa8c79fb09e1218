"""Worker shards (SPEC 12): atomic, idempotent writes; `ingest shards` merges them once, refuses
mismatches."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import warehouse as wh
from cli import cli
from ingest.shards import ShardError, ShardWriter, default_run_id, ingest_shards, write_shard
from warehouse import lineage
from warehouse.bench import sample_batch

WEIGHTS = "0123456789abcdef" * 4
CONFIG = {"model": "gpt2-tiny", "seed": 1, "layers": [3], "problem_ids_hash": "h"}
FIELDS = {
    "config": CONFIG,
    "n_problems_planned": 6,
    "model_name": "gpt2-tiny",
    "weights_sha256": WEIGHTS,
    "seed": 1,
}
PER_PROBLEM = 43 * 2 * 2 * 35  # attention rows of one sample problem (2 layers, 2 heads)


def rows(indices):
    """Problem rows, results and attention of sample problems, with problem_id columns (one part)."""
    return sample_batch(indices, n_layers=2, n_heads=2)


def shard(directory, index, fields=FIELDS, count=3):
    return write_shard(directory, fields, *rows([2 * index, 2 * index + 1]), index=index, count=count)


def fetch(db, sql, params=None):
    with wh.open_warehouse(db, read_only=True).reader() as con:
        return con.execute(sql, params or []).fetchall()


def counts(db):
    return fetch(
        db,
        "SELECT (SELECT count(*) FROM results), (SELECT count(*) FROM attention), "
        "(SELECT count(*) FROM run_problems), (SELECT count(*) FROM runs)",
    )[0]


def test_shards_merge_into_one_complete_run_once(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w"
    paths = [shard(out, i) for i in range(3)]
    assert [p.name for p in paths] == ["shard-0000-of-0003", "shard-0001-of-0003", "shard-0002-of-0003"]
    manifest = json.loads((paths[1] / "manifest.json").read_text())
    assert manifest["config_hash"] == lineage.config_hash(CONFIG) and manifest["weights_sha256"] == WEIGHTS
    assert manifest["parts"][0]["problem_ids"] == ["gen0000000000002", "gen0000000000003"]
    result = ingest_shards(db, out)
    (run,) = result["runs"]
    assert run["run_id"] == default_run_id(lineage.config_hash(CONFIG))
    assert (run["status"], run["parts_added"], run["problems_committed"]) == ("complete", 3, 6)
    assert counts(db) == (6 * 43, 6 * PER_PROBLEM, 6, 1)
    assert fetch(db, "SELECT status, model_name, config_hash, weights_sha256, n_problems_planned FROM runs")[
        0
    ] == ("complete", "gpt2-tiny", lineage.config_hash(CONFIG), WEIGHTS, 6)
    again = CliRunner().invoke(cli, ["ingest", "shards", str(out), "--db", str(db), "--json"])
    assert again.exit_code == 0, again.output
    (run,) = json.loads(again.stdout)["runs"]
    assert (run["parts_added"], run["parts_already_present"], run["status"]) == (0, 3, "complete")
    assert counts(db) == (6 * 43, 6 * PER_PROBLEM, 6, 1)


def test_partial_and_temporary_shards_are_ignored_and_later_shards_complete_the_run(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w"
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
    out, db = tmp_path / "shards", tmp_path / "w"
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
    out, db = tmp_path / "shards", tmp_path / "w"
    path = shard(out, 0)
    results = path / "part-000000" / "results.parquet"
    pq.write_table(pq.read_table(results).slice(0, 5), results)
    with pytest.raises(ValueError, match="5 rows, the manifest says 86"):
        ingest_shards(db, out)
    assert not db.exists() or counts(db) == (0, 0, 0, 0)


def one_line_error(args):
    result = CliRunner().invoke(cli, ["ingest", "shards", *map(str, args)])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def duplicate_last_row(table):
    return pa.concat_tables([table, table.slice(table.num_rows - 1, 1)])


@pytest.mark.parametrize(
    "defect, match",
    [
        (
            "results",
            "results.parquet: duplicate results rows \\(more than one row for problem_id gen0+5, condition",
        ),
        (
            "attention",
            "attention.parquet: duplicate attention rows \\(more than one row for problem_id gen0+5, cond",
        ),
        (
            "shared",
            "shard-0002-of-0003/part-000000: problem gen0+3 is also in .*shard-0001-of-0003/part-000000",
        ),
    ],
)
def test_duplicate_rows_or_problems_are_refused_before_anything_is_written(tmp_path, defect, match):
    out, db = tmp_path / "shards", tmp_path / "w"
    shard(out, 0)
    shard(out, 1)
    problems, results, attention = rows([3, 5] if defect == "shared" else [4, 5])
    if defect == "results":
        results = duplicate_last_row(results)
    if defect == "attention":
        attention = duplicate_last_row(attention)
    write_shard(out, FIELDS, problems, results, attention, index=2, count=3)
    with pytest.raises(ShardError, match=match):
        ingest_shards(db, out)
    assert not db.exists() or counts(db) == (0, 0, 0, 0)  # no run begun, no part of it committed
    assert re.search(match, one_line_error([out, "--db", db]))


@pytest.mark.parametrize(
    "field, value",
    [("convention", "legacy"), ("status", "complete"), ("error", "x"), ("started_at", "2020-01-01")],
)
def test_a_manifest_cannot_override_the_run_lineage_ingest_owns(tmp_path, field, value):
    out, db = tmp_path / "shards", tmp_path / "w"
    path = shard(out, 0)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["fields"][field] = value
    (path / "manifest.json").write_text(json.dumps(manifest))
    output = one_line_error([out, "--db", db])
    assert f"shard-0000-of-0003: invalid shard manifest: fields.{field} is not a worker's to set" in output
    assert not db.exists() or counts(db) == (0, 0, 0, 0)


def corrupt_weights(path):
    """Overwrite the start of the attention weight column's data: the key columns stay readable."""
    column = pq.read_metadata(path).row_group(0).column(pq.read_schema(path).get_field_index("weight"))
    data = bytearray(path.read_bytes())
    data[column.data_page_offset : column.data_page_offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_a_merge_failing_midway_leaves_a_failed_run_that_ingesting_again_completes(tmp_path):
    out, db = tmp_path / "shards", tmp_path / "w"
    for i in range(3):
        shard(out, i)
    broken = out / "shard-0001-of-0003" / "part-000000" / "attention.parquet"
    good = broken.read_bytes()
    corrupt_weights(broken)
    with pytest.raises(OSError):
        pq.read_table(broken)
    assert pq.read_table(
        broken, columns=["problem_id", "condition_id", "layer", "head", "dst", "src"]
    ).num_rows
    output = one_line_error([out, "--db", db])
    run_id = default_run_id(lineage.config_hash(CONFIG))
    assert "shard-0001-of-0003/part-000000: Couldn't deserialize thrift" in output
    assert f"run {run_id} is marked failed with 2 of 6 problems committed" in output
    assert f"run `ingest shards {out}` again to resume it" in output
    store = wh.open_warehouse(db)
    run = store.show_run(run_id)
    assert run["status"] == "failed" and "shard-0001-of-0003/part-000000" in run["error"]
    assert store.committed_problems(run_id) == {"gen0000000000000", "gen0000000000001"}
    assert counts(db) == (2 * 43, 2 * PER_PROBLEM, 2, 1)

    broken.write_bytes(good)
    (merged,) = ingest_shards(db, out)["runs"]
    assert (merged["status"], merged["parts_added"], merged["parts_already_present"]) == ("complete", 2, 1)
    assert counts(db) == (6 * 43, 6 * PER_PROBLEM, 6, 1)
    _, results, attention = rows(range(6))
    keys = "problem_id, condition_id, layer, head, dst, src"
    assert fetch(db, f"SELECT count(DISTINCT ({keys})), sum(weight)::DOUBLE FROM attention")[0] == (
        6 * PER_PROBLEM,
        pytest.approx(pc.sum(attention["weight"]).as_py(), rel=1e-9),
    )
    assert fetch(db, "SELECT count(DISTINCT (problem_id, condition_id)), sum(kl_first) FROM results")[0] == (
        6 * 43,
        pytest.approx(pc.sum(results["kl_first"]).as_py(), rel=1e-9),
    )
    assert fetch(db, "SELECT status, error FROM runs")[0] == ("complete", None)
