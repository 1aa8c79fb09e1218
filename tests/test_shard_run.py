"""`run --shard I/N` (SPEC 12): shards merge into exactly a single-process run's rows; finished shards
are skipped."""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pytest
from click.testing import CliRunner

from cli import cli
from engine.model.arch import arch_config, build_arch_model
from engine.runs.config import RunConfig
from engine.runs.local import execute_run
from engine.runs.plan import select_problems
from engine.runs.sharded import parse_shard, run_shard, shard_batches
from ingest.shards import ingest_shards
from warehouse.schema import KEYS, READOUT_TABLES


def request(**kw) -> RunConfig:
    return RunConfig(problems=6, seed=3, methods="zero,random", attention="baseline", batch_size=2, **kw)


def rows(db, run_id: str, table: str) -> pa.Table:
    """Every row of a run without its run id, in a fixed order."""
    from warehouse.store import open_warehouse

    keys = {
        "results": "problem_id, condition_id",
        "attention": "problem_id, condition_id, layer, head, dst, src",
        **{t: ", ".join(KEYS[t]) for t in READOUT_TABLES},
    }[table]
    with open_warehouse(db, read_only=True).reader() as con:
        return con.sql(
            f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = ? ORDER BY {keys}", params=[run_id]
        ).to_arrow_table()


def test_shards_partition_the_single_process_batches():
    problems = select_problems(RunConfig(problems=23))
    single = [problems[i : i + 4] for i in range(0, 23, 4)]
    shards = [shard_batches(problems, 4, i, 3) for i in range(3)]
    assert sorted(map(tuple, (b for s in shards for b in s)), key=lambda b: problems.index(b[0])) == [
        tuple(b) for b in single
    ]  # the same batches, each in exactly one shard
    assert [len(s) for s in shards] == [2, 2, 2] and shards[1] == [single[1], single[4]]
    assert shard_batches(problems, 4, 7, 8) == []  # more shards than batches: some are empty
    assert parse_shard("3/16") == (3, 16)
    for bad in ("16/16", "-1/4", "2", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


@pytest.mark.slow
def test_shards_merge_into_exactly_the_rows_of_a_single_process_run(tmp_path):
    single_db, db = tmp_path / "single", tmp_path / "w"
    single = execute_run(request(), str(single_db), progress=False)
    written = [run_shard(request(), i, 2, db=db, progress=False) for i in (1, 0)]
    assert [w["status"] for w in written] == ["written", "written"] and sum(
        w["problems"] for w in written
    ) == 6
    merged = ingest_shards(db, written[0]["shard_dir"])["runs"][0]
    assert merged["status"] == "complete" and merged["run_id"] == written[0]["run_id"]
    for table in ("results", "attention"):
        assert rows(db, merged["run_id"], table).equals(rows(single_db, single["run_id"], table)), table
    from warehouse.store import open_warehouse

    shown = [
        open_warehouse(d, read_only=True).show_run(r)
        for d, r in ((db, merged["run_id"]), (single_db, single["run_id"]))
    ]
    assert shown[0]["config_hash"] == shown[1]["config_hash"]  # the same experiment, another run id


def test_shards_carry_the_readouts(tmp_path):
    """--states --attention tokens: the portable shards hold the four readout tables, and the merge commits
    exactly the rows a single process writes."""
    req = RunConfig(problems=4, methods="zero", layer=3, batch_size=2, states=True, attention="tokens")
    single_db, db = tmp_path / "single", tmp_path / "w"
    single = execute_run(req, str(single_db), progress=False)
    written = [run_shard(req, i, 2, db=db, progress=False) for i in (0, 1)]
    merged = ingest_shards(db, written[0]["shard_dir"])["runs"][0]
    assert merged["status"] == "complete"
    for table in READOUT_TABLES:
        got, want = rows(db, merged["run_id"], table), rows(single_db, single["run_id"], table)
        assert got.num_rows > 0 and got.equals(want), table


def test_a_finished_shard_is_skipped_and_mismatched_workers_are_stopped(tmp_path):
    db = str(tmp_path / "w")
    args = [
        "run",
        "--problems",
        "4",
        "--methods",
        "zero",
        "--attention",
        "none",
        "--batch-size",
        "1",
        "--shard",
        "1/2",
        "--run-id",
        "array-1",
        "--db",
        db,
    ]
    first = CliRunner().invoke(cli, [*args, "--json"])
    assert first.exit_code == 0, first.output
    written = json.loads(first.stdout)
    assert (written["status"], written["problems"], written["run_id"]) == ("written", 2, "array-1")
    manifest = tmp_path / "w.worker-shards" / "array-1" / "shard-0001-of-0002" / "manifest.json"
    before = (manifest.read_text(), manifest.stat().st_mtime_ns)
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "skipped" in again.stdout
    assert (manifest.read_text(), manifest.stat().st_mtime_ns) == before
    assert sorted(p.name for p in manifest.parent.parent.iterdir()) == [
        "shard-0001-of-0002"
    ]  # no temp debris
    other = CliRunner().invoke(
        cli, [*args[:-5], "0/2", "--batch-size", "2", "--run-id", "array-1", "--db", db]
    )
    assert (
        other.exit_code != 0
        and "--batch-size" in other.output
        and len(other.output.strip().splitlines()) == 1
    )
    count = CliRunner().invoke(cli, [*args[:-5], "0/3", "--run-id", "array-1", "--db", db])
    assert count.exit_code != 0 and "in 2 shards, not 3" in count.output


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--executor", "ray", "--workers", "2"], 'pip install -e ".[ray]"'),
        (["--workers", "2"], "--workers apply to --executor ray"),
        (["--shard", "0/2", "--resume", "latest"], "--resume does not apply to shards"),
        (["--run-id", "x"], "--run-id and --shard-dir apply to --shard and --executor ray"),
    ],
)
def test_executor_flags_fail_in_one_line(tmp_path, monkeypatch, flags, message):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    out = CliRunner().invoke(cli, ["run", "--problems", "2", *flags, "--db", str(tmp_path / "w")])
    assert out.exit_code != 0 and message in out.output and len(out.output.strip().splitlines()) == 1, (
        out.output
    )


def test_architecture_only_gpt2_has_the_real_shapes():
    model = build_arch_model("gpt2-124m")
    cfg = model.codi.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions, cfg.vocab_size) == (
        12,
        12,
        768,
        1024,
        50260,
    )
    assert (
        model.info.extra["parameters"] - sum(p.numel() for p in model.prj.parameters())
        == 124_439_808 + 3 * 768
    )
    assert cfg._attn_implementation == "eager" and model.prj[1].out_features == 768
    assert model.answer(["Tom has 3 apples and buys 4 more. How many apples?"], max_new_tokens=2)  # runs


def test_architecture_only_llama_config_is_llama_3_2_1b():
    cfg = arch_config("llama-1b", 0, 0)
    assert (
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.vocab_size,
        cfg.head_dim,
    ) == (16, 32, 8, 2048, 8192, 128256, 64)
    assert cfg.tie_word_embeddings and cfg.rope_parameters["rope_theta"] == 500000.0
