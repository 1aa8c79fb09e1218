"""Shard validation without a warehouse: manifests, shard files, part rows, the shards of one run."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.shards import (
    FORMAT,
    INGEST_FIELDS,
    WORKER_FIELDS,
    ManifestError,
    Shard,
    ShardError,
    ShardWriter,
    check_part_rows,
    check_run_shards,
    check_shard_files,
    find_shards,
    read_manifest,
    validate_manifest,
    write_shard,
)
from warehouse import lineage
from warehouse.frames import first_duplicate

CONFIG = {"model": "gpt2-tiny", "seed": 0, "layers": [2], "problem_ids_hash": "h"}
WEIGHTS = "0123456789abcdef" * 4
# What engine.runs.plan.plan_run gives a worker, plus what ShardWriter adds.
ENGINE_FIELDS = {
    "model_name": "gpt2-tiny",
    "weights_sha256": WEIGHTS,
    "n_layers": 4,
    "n_heads": 4,
    "d_model": 256,
    "patch_layers": [2],
    "methods": ["baseline", "zero", "gauss"],
    "sigmas": [0.5, 1],
    "seed": 0,
    "dataset_name": "synthetic",
    "dataset_hash": "fedcba9876543210" * 4,
    "device": "cpu",
    "dtype": "float32",
    "n_problems_planned": 6,
    "code_version": "9522132f00-dirty",
    "library_versions": {"python": "3.12.3", "torch": "2.9.1"},
}
DIR = Path("/data/shards/shard-0001-of-0003")


def good() -> dict:
    return {
        "format": FORMAT,
        "run_id": "array-run-1",
        "shard_index": 1,
        "shard_count": 3,
        "config": copy.deepcopy(CONFIG),
        "config_hash": lineage.config_hash(CONFIG),
        "weights_sha256": WEIGHTS,
        "fields": copy.deepcopy(ENGINE_FIELDS),
        "parts": [
            {
                "name": "part-000000",
                "problem_ids": ["p2"],
                "rows": {"problems": 1, "results": 3, "attention": 8},
            },
            {
                "name": "part-000001",
                "problem_ids": ["p3"],
                "rows": {"problems": 1, "results": 3, "attention": 8},
            },
        ],
        "written_at": "2026-05-01T12:00:00+00:00",
    }


def test_a_workers_manifest_passes():
    manifest = good()
    assert validate_manifest(manifest, DIR) is manifest
    for name in WORKER_FIELDS:  # every field but n_problems_planned may be null (not recorded)
        if name != "n_problems_planned":
            m = good()
            m["fields"][name] = None
            m["weights_sha256"] = m["fields"]["weights_sha256"]
            validate_manifest(m, DIR)
    m = good()
    m["weights_sha256"] = m["fields"]["weights_sha256"] = "random-llama-1b-seed0"  # engine/model/arch.py
    validate_manifest(m, DIR)
    with pytest.raises(ManifestError, match="manifest.json holds \\[1\\], not an object"):
        validate_manifest([1], DIR)


def _set(path: str, value):
    def change(m):
        *keys, last = path.split(".")
        target = m
        for key in keys:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if isinstance(target, list) else last] = value

    return change


_DELETE = object()


def _rehash(config):
    def change(m):
        m["config"] = config
        m["config_hash"] = lineage.config_hash(config)

    return change


BAD = {
    "nearly empty": (
        lambda m: m.clear() or m.update(format=FORMAT, run_id="r"),
        "manifest lacks shard_index, shard_count, config",
    ),
    "format": (_set("format", "codi-warehouse-shard/2"), "manifest format 'codi-warehouse-shard/2'"),
    "format missing": (_set("format", _DELETE), "manifest format None"),
    "key missing": (_set("parts", _DELETE), "manifest lacks parts"),
    "unknown key": (_set("status", "complete"), "unknown key"),
    "run id": (_set("run_id", "../../etc"), "run_id '../../etc' is not a run id"),
    "index type": (_set("shard_index", "1"), "shard_index/shard_count '1'/3"),
    "index bool": (_set("shard_index", True), "shard_index/shard_count True/3"),
    "index >= count": (_set("shard_index", 3), "0 <= index < count"),
    "index vs name": (_set("shard_index", 2), "named shard-0002-of-0003, not shard-0001-of-0003"),
    "count vs name": (_set("shard_count", 4), "named shard-0001-of-0004"),
    "config type": (_set("config", [1, 2]), "config is \\[1, 2\\], expected an object"),
    "config edited": (_set("config.seed", 7), "is not the hash of its config"),
    "config hash short": (_set("config_hash", "abc123"), "config_hash 'abc123' is not 64 lowercase hex"),
    "config hash upper": (
        lambda m: m.update(config_hash=m["config_hash"].upper()),
        "is not 64 lowercase hex",
    ),
    "fields type": (_set("fields", ["model_name"]), "fields is \\['model_name'\\], expected an object"),
    "planned missing": (_set("fields.n_problems_planned", _DELETE), "fields.n_problems_planned is missing"),
    "planned zero": (
        _set("fields.n_problems_planned", 0),
        "fields.n_problems_planned is 0, expected a positive",
    ),
    "planned negative": (_set("fields.n_problems_planned", -6), "fields.n_problems_planned is -6"),
    "planned str": (_set("fields.n_problems_planned", "6"), "fields.n_problems_planned is '6'"),
    "planned float": (_set("fields.n_problems_planned", 6.0), "fields.n_problems_planned is 6.0"),
    "planned bool": (_set("fields.n_problems_planned", True), "fields.n_problems_planned is True"),
    "planned null": (_set("fields.n_problems_planned", None), "fields.n_problems_planned is None"),
    "weights not hex": (
        lambda m: m.update(weights_sha256="w" * 64, fields={**m["fields"], "weights_sha256": "w" * 64}),
        "fields.weights_sha256 is 'wwww",
    ),
    "weights short": (
        lambda m: m.update(weights_sha256="ab" * 16, fields={**m["fields"], "weights_sha256": "ab" * 16}),
        "expected 64 lowercase hex digits",
    ),
    "weights differ": (_set("weights_sha256", "ab" * 32), "differs from fields.weights_sha256"),
    "dataset hash": (_set("fields.dataset_hash", "h"), "fields.dataset_hash is 'h'"),
    "seed str": (_set("fields.seed", "0"), "fields.seed is '0', expected a 64-bit integer"),
    "seed huge": (_set("fields.seed", 2**64), "fields.seed is"),
    "n_layers": (_set("fields.n_layers", 0), "fields.n_layers is 0"),
    "patch layers": (_set("fields.patch_layers", [2, "3"]), "fields.patch_layers is \\[2, '3'\\]"),
    "methods": (_set("fields.methods", "zero"), "fields.methods is 'zero'"),
    "sigmas": (_set("fields.sigmas", [float("nan")]), "fields.sigmas is \\[nan\\]"),
    "versions": (_set("fields.library_versions", ["torch 2.9"]), "fields.library_versions is"),
    "model name empty": (_set("fields.model_name", ""), "fields.model_name is ''"),
    "unknown field": (
        _set("fields.favourite_colour", "red"),
        "fields.favourite_colour is not a lineage field",
    ),
    "written_at": (_set("written_at", "yesterday"), "written_at 'yesterday' is not an ISO timestamp"),
    "parts type": (_set("parts", {}), "parts is \\{\\}, expected a list"),
    "part keys": (
        _set("parts.0.path", "/etc"),
        "parts\\[0\\] is not an object of name, problem_ids and rows",
    ),
    "part absolute": (_set("parts.0.name", "/etc"), "parts\\[0\\] is named '/etc', expected 'part-000000'"),
    "part dotdot": (_set("parts.1.name", "../shard-0000-of-0003/part-000000"), "parts\\[1\\] is named"),
    "part order": (_set("parts.0.name", "part-000001"), "expected 'part-000000'"),
    "part name short": (_set("parts.0.name", "part-0"), "expected 'part-000000'"),
    "ids type": (_set("parts.0.problem_ids", "p2"), "part-000000: problem_ids is not a list"),
    "ids non-string": (_set("parts.0.problem_ids", [2]), "problem_ids is not a list of problem id strings"),
    "ids empty string": (_set("parts.0.problem_ids", [""]), "problem_ids is not a list"),
    "ids twice in a part": (
        lambda m: m["parts"][0].update(
            problem_ids=["p2", "p2"], rows={"problems": 2, "results": 3, "attention": 8}
        ),
        "problem p2 is listed twice",
    ),
    "ids twice in a shard": (_set("parts.1.problem_ids", ["p2"]), "part-000001: problem p2 is listed twice"),
    "rows keys": (_set("parts.0.rows", {"problems": 1, "results": 3}), "rows is not an object of row counts"),
    "rows negative": (_set("parts.0.rows.results", -1), "rows holds"),
    "rows str": (_set("parts.0.rows.attention", "8"), "rows holds"),
    "rows vs ids": (_set("parts.0.rows.problems", 2), "rows.problems is 2 for 1 problem ids"),
    "more than planned": (_set("fields.n_problems_planned", 1), "holds 2 problems, more than the run's"),
}


@pytest.mark.parametrize("change, match", list(BAD.values()), ids=list(BAD))
def test_a_bad_manifest_is_refused_in_one_line(change, match):
    manifest = good()
    change(manifest)
    with pytest.raises(ManifestError, match=match) as info:
        validate_manifest(manifest, DIR)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{DIR}: invalid shard manifest: ")
    assert message.endswith("; delete shard-0001-of-0003 and rerun `run --shard 1/3` with the run's flags")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("field", sorted(INGEST_FIELDS))
def test_a_manifest_cannot_set_the_run_lineage_ingest_owns(field):
    manifest = good()
    manifest["fields"][field] = {"status": "complete", "started_at": "2020-01-01"}.get(field, "x")
    with pytest.raises(ManifestError, match=f"fields.{field} is not a worker's to set"):
        validate_manifest(manifest, DIR)


def test_a_manifest_must_be_one_json_object_without_repeated_keys(tmp_path):
    shard = tmp_path / "shard-0001-of-0003"
    shard.mkdir()
    text = json.dumps(good())
    (shard / "manifest.json").write_text(text)
    assert read_manifest(shard) == good()
    (shard / "manifest.json").write_text(text[:-1] + ', "run_id": "other-run"}')
    with pytest.raises(ManifestError, match="not valid JSON \\(key 'run_id' appears twice\\)"):
        read_manifest(shard)
    (shard / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(ManifestError, match=f"^{shard}: manifest.json is not valid JSON"):
        find_shards(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_text(text)
    (shard / "manifest.json").unlink()
    (shard / "manifest.json").symlink_to(outside)
    with pytest.raises(ManifestError, match="manifest.json links outside the shard directory"):
        read_manifest(shard)


# --- shards on disk ------------------------------------------------------------------------------
FIELDS = {"config": CONFIG, "n_problems_planned": 6, "model_name": "gpt2-tiny", "weights_sha256": WEIGHTS}


def tables(ids, results_per=3, cells=2):
    """Small problem, result and attention rows of `ids` (dicts, as the engine's batches may be)."""
    problems = [{"problem_id": p, "question": f"q {p}", "gold_answer": 1.0} for p in ids]
    results = [
        {"problem_id": p, "method": "zero", "condition_id": c} for p in ids for c in range(results_per)
    ]
    attention = [
        {"problem_id": p, "condition_id": c, "layer": 0, "head": h, "dst": d, "src": -1, "weight": 0.25}
        for p in ids
        for c in range(results_per)
        for h in range(cells)
        for d in range(cells)
    ]
    return problems, results, attention


def written(directory, index=1, ids=("p2", "p3"), fields=FIELDS, **changes) -> Shard:
    problems, results, attention = tables(ids)
    for name, change in changes.items():
        change({"problems": problems, "results": results, "attention": attention}[name])
    path = write_shard(directory, fields, problems, results, attention, index=index, count=3)
    return Shard(path, read_manifest(path))


def test_a_written_shard_passes_every_check(tmp_path):
    engine_like = {**ENGINE_FIELDS, "config": CONFIG, "run_id": "array-run-1"}
    shard = written(tmp_path, fields=engine_like)
    assert shard.manifest["fields"] == {k: v for k, v in ENGINE_FIELDS.items()}
    check_shard_files(shard)
    check_part_rows(shard, shard.manifest["parts"][0], "array-run-1")
    other = written(tmp_path, index=2, ids=("p4",), fields=engine_like)
    check_run_shards([shard, other])


def test_the_writer_refuses_fields_ingest_would_refuse(tmp_path):
    for field, value in [
        ("status", "complete"),
        ("convention", "legacy"),
        ("error", None),
        ("colour", "red"),
    ]:
        with pytest.raises(TypeError, match=f"fields.{field} is not"):
            ShardWriter(tmp_path, {**FIELDS, field: value}, index=0, count=3)
    with pytest.raises(TypeError, match="fields.weights_sha256 is 'wwww"):
        ShardWriter(tmp_path, {**FIELDS, "weights_sha256": "w" * 64}, index=0, count=3)
    with pytest.raises(ValueError, match="run id '../x'"):
        ShardWriter(tmp_path, {**FIELDS, "run_id": "../x"}, index=0, count=3)
    assert list(tmp_path.iterdir()) == []  # refused before any temp directory is made


def test_a_shard_holds_its_manifest_and_listed_parts_only(tmp_path):
    shard = written(tmp_path / "shards")
    part = shard.path / "part-000000"
    (shard.path / "part-000001").mkdir()
    with pytest.raises(ShardError, match="unexpected 'part-000001' in the shard"):
        check_shard_files(shard)
    (shard.path / "part-000001").rmdir()
    (part / "notes.txt").write_text("x")
    with pytest.raises(ShardError, match="unexpected 'notes.txt' in the part"):
        check_shard_files(shard)
    (part / "notes.txt").unlink()
    check_shard_files(shard)
    shutil.move(part, tmp_path / "moved")
    with pytest.raises(ShardError, match="part-000000: part directory missing"):
        check_shard_files(shard)
    shutil.move(tmp_path / "moved", part)


def test_nothing_in_a_shard_may_link_outside_it(tmp_path):
    shard = written(tmp_path / "shards")
    part = shard.path / "part-000000"
    outside = tmp_path / "outside"
    shutil.copytree(part, outside)
    (part / "results.parquet").unlink()
    (part / "results.parquet").symlink_to(outside / "results.parquet")
    with pytest.raises(ShardError, match="results.parquet: links outside the shard directory") as info:
        check_shard_files(shard)
    assert "\n" not in str(info.value) and "rerun `run --shard 1/3`" in str(info.value)
    (part / "results.parquet").unlink()
    (part / "results.parquet").symlink_to(os.path.relpath(outside / "results.parquet", part))
    with pytest.raises(ShardError, match="links outside"):
        check_shard_files(shard)
    shutil.copy(outside / "results.parquet", shard.path / "kept.parquet")  # a link inside the shard is fine
    (part / "results.parquet").unlink()
    (part / "results.parquet").symlink_to("../kept.parquet")
    with pytest.raises(ShardError, match="unexpected 'kept.parquet' in the shard"):  # but not a stray file
        check_shard_files(shard)
    (shard.path / "kept.parquet").unlink()
    shutil.rmtree(part)
    part.symlink_to(outside)
    with pytest.raises(ShardError, match="part-000000: links outside the shard directory"):
        check_shard_files(shard)


def _duplicate_last(rows):
    rows.append(dict(rows[-1]))


@pytest.mark.parametrize(
    "table, match",
    [
        ("results", "duplicate results rows \\(more than one row for problem_id p3, condition_id 2\\)"),
        (
            "attention",
            "duplicate attention rows \\(more than one row for problem_id p3, condition_id 2, layer 0",
        ),
    ],
)
def test_a_part_holding_a_key_twice_is_refused(tmp_path, table, match):
    shard = written(tmp_path, **{table: _duplicate_last})
    check_shard_files(shard)  # the row counts agree with the manifest: only the rows tell
    with pytest.raises(ShardError, match=match) as info:
        check_part_rows(shard, shard.manifest["parts"][0], shard.manifest["run_id"])
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(shard.path / "part-000000" / f"{table}.parquet"))


def test_a_parts_rows_must_be_its_problems_and_its_run(tmp_path):
    shard = written(tmp_path)
    part, run_id = shard.manifest["parts"][0], shard.manifest["run_id"]
    with pytest.raises(ShardError, match="problems.parquet: its problems differ from the manifest's"):
        check_part_rows(shard, {**part, "problem_ids": ["p2", "p9"]}, run_id)
    with pytest.raises(ShardError, match="results rows of run sharded-.*, not of the shard's run other-run"):
        check_part_rows(shard, part, "other-run")
    path = shard.path / "part-000000" / "results.parquet"
    data = pq.read_table(path)
    ids = pa.array(["p2"] * (data.num_rows - 1) + ["p7"]).dictionary_encode()
    pq.write_table(data.set_column(data.schema.get_field_index("problem_id"), "problem_id", ids), path)
    with pytest.raises(ShardError, match="results rows of problem p7, which part-000000 does not list"):
        check_part_rows(shard, part, run_id)
    path.write_bytes(b"not parquet")
    with pytest.raises(ShardError, match="results.parquet: unreadable"):
        check_part_rows(shard, part, run_id)


def test_the_shards_of_a_run_share_no_problem(tmp_path):
    one = written(tmp_path, index=0, ids=("p0", "p1"))
    two = written(tmp_path, index=1, ids=("p1", "p2"))
    with pytest.raises(
        ShardError, match="shard-0001-of-0003/part-000000: problem p1 is also in .*shard-0000-of-0003"
    ):
        check_run_shards([one, two])
    other = written(tmp_path / "other", index=1, ids=("p2", "p3"))
    three = written(tmp_path, index=2, ids=("p4", "p5", "p6", "p7"))
    with pytest.raises(ShardError, match="hold 8 problems, more than its n_problems_planned 6"):
        check_run_shards([one, other, three])


def test_duplicates_are_found_vectorized_in_attention_sized_parts():
    n = 400_000
    keys = pa.table(
        {"condition_id": pa.array([i % 100 for i in range(n)], pa.int16()), "src": pa.array(range(n))}
    )
    assert first_duplicate(keys) is None
    twice = pa.concat_tables([keys, keys.slice(123_456, 1)])
    assert first_duplicate(twice) == {"condition_id": 56, "src": 123_456}
