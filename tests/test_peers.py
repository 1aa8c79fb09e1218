"""The peers (engine/peers/) compute the engine's rows: row for row, on the trained gpt2-tiny.

`bench engine` times the engine against them, which is only honest if they do the same work: every
result column (answers exactly; KL, JS, entropy, log p(gold), disruption within 1e-4 in float32, as
tests/test_engine.py holds the sequential reference) and every attention weight (within 1e-5). A
negative control shows the comparison has teeth, and the analytic FLOP count the bench reports is held
to torch's own FlopCounterMode.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from cli import cli
from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.model.checkpoints import load_model
from engine.peers.batched import run_batched_peer
from engine.peers.seed_loop import run_seed_loop
from engine.runs.bench import PATHS, bench_engine, bench_engine_lines
from engine.runs.flops import counting
from engine.runs.local import donor_sites
from ingest.datasets import synthetic_problems

LAYER = 3
KEYS = ["problem_id", "condition_id"]
ATTENTION_KEYS = ["problem_id", "condition_id", "layer", "head", "dst", "src"]
MEASURES = (
    "kl_first",
    "kl_answer",
    "kl_max",
    "js_first",
    "js_answer",
    "entropy_first",
    "entropy_answer",
    "logp_gold",
    "disruption",
)
TOLERANCE, ATTENTION_TOLERANCE = 1e-4, 1e-5


def options(methods=("zero", "gauss", "shuffle", "random"), sigmas=(1.0,), attention="all", seed=0):
    conditions = build_conditions([LAYER], methods, sigmas) if methods else build_conditions([LAYER])
    return EngineOptions((LAYER,), tuple(conditions), seed, attention)


def few(attention="all"):
    """The baseline, zero at T2 and shuffle at T4: enough for what does not need many rows."""
    conditions = build_conditions([LAYER], ("zero", "shuffle"))
    picked = [c for c in conditions if (c.method, c.thought) in (("zero", 2), ("shuffle", 4))]
    return EngineOptions((LAYER,), (conditions[0], *picked), 0, attention)


@pytest.fixture(scope="module")
def model():
    return load_model("gpt2-tiny")


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(6, seed=1)


@pytest.fixture(scope="module")
def pool(model, problems):
    return donor_sites(model, problems, options(), ("random",))


@pytest.fixture(scope="module")
def engine(model, problems, pool):
    return run_chunk(model, problems[:3], options(), pool)


@pytest.fixture(scope="module")
def peer(model, problems, pool):
    return run_batched_peer(model, problems[:3], options(), pool)


@pytest.fixture(scope="module")
def seed(model, problems, pool):
    return run_seed_loop(model, problems[:2], options(), pool)


def assert_rows_agree(engine_results: pl.DataFrame, peer_results: pl.DataFrame) -> None:
    """Same keys and columns; every non-float column equal; floats NULL alike and within TOLERANCE."""
    ids = peer_results["problem_id"].unique().implode()
    a = engine_results.filter(pl.col("problem_id").is_in(ids)).sort(KEYS)
    b = peer_results.sort(KEYS)
    assert a.schema == b.schema
    assert a.select(KEYS).equals(b.select(KEYS))
    assert a["answer_text"].to_list() == b["answer_text"].to_list()
    for column in a.columns:
        if column in MEASURES:
            assert a[column].is_null().to_list() == b[column].is_null().to_list(), column
            diff = (a[column] - b[column]).abs().max()
            assert diff is None or diff < TOLERANCE, (column, diff)
        else:
            assert a[column].to_list() == b[column].to_list(), column


def assert_attention_agrees(engine_attention, peer_attention) -> None:
    def frame(table):
        return pl.from_arrow(table).with_columns(pl.col("problem_id").cast(pl.Utf8)).sort(ATTENTION_KEYS)

    b = frame(peer_attention)
    a = frame(engine_attention).filter(pl.col("problem_id").is_in(b["problem_id"].unique().implode()))
    assert a.schema == b.schema
    assert a.select(ATTENTION_KEYS).equals(b.select(ATTENTION_KEYS))
    assert (a["weight"] - b["weight"]).abs().max() < ATTENTION_TOLERANCE


def test_the_fixture_has_rows_worth_comparing(engine):
    """Corruptions that flip answers and ones that keep them; divergences well above the tolerance."""
    rows = engine.results.filter(pl.col("method") != "baseline")
    base = engine.results.filter(pl.col("method") == "baseline").select("problem_id", base="answer_text")
    changed = rows.join(base, on="problem_id").filter(pl.col("answer_text") != pl.col("base"))
    assert 0 < changed.height < rows.height
    assert rows["kl_max"].max() > 1000 * TOLERANCE
    assert rows["donor_problem_id"].drop_nulls().n_unique() > 1  # random and shuffle donors
    assert engine.results["kl_answer"].null_count() < engine.results.height


def test_batched_peer_matches_the_engine_row_for_row(engine, peer):
    assert peer.results.height == 3 * 25
    assert_rows_agree(engine.results, peer.results)
    assert_attention_agrees(engine.attention, peer.attention)


def test_seed_loop_matches_the_engine_row_for_row(engine, seed):
    assert seed.results.height == 2 * 25
    assert_rows_agree(engine.results, seed.results)
    assert_attention_agrees(engine.attention, seed.attention)


def test_the_comparison_catches_other_replacement_values(model, problems, pool, engine):
    """A peer run under another seed draws other Gaussian noise and other donors: the check must fail."""
    other = run_batched_peer(model, problems[:1], options(seed=1), pool)
    with pytest.raises(AssertionError):
        assert_rows_agree(engine.results, other.results)


def test_batched_peer_matches_the_engine_on_all_43_default_conditions(model, problems):
    opts = options(methods=None)
    assert len(opts.conditions) == 43
    pool = donor_sites(model, problems, opts, ("random", "mean"))
    engine = run_chunk(model, problems[:2], opts, pool)
    peer = run_batched_peer(model, problems[1:2], opts, pool)
    assert_rows_agree(engine.results, peer.results)
    assert_attention_agrees(engine.attention, peer.attention)


@pytest.mark.slow
def test_seed_loop_matches_the_engine_on_all_43_default_conditions(model, problems):
    opts = options(methods=None)
    pool = donor_sites(model, problems, opts, ("random",))
    engine = run_chunk(model, problems[:2], opts, pool)
    seed = run_seed_loop(model, problems[1:2], opts, pool)
    assert_rows_agree(engine.results, seed.results)
    assert_attention_agrees(engine.attention, seed.attention)


@pytest.mark.parametrize("attention", ["baseline", "none"])
def test_peers_record_attention_as_the_engine_does(model, problems, pool, attention):
    opts = few(attention)
    engine = run_chunk(model, problems[:1], opts, pool)
    for run in (run_batched_peer, run_seed_loop):
        out = run(model, problems[:1], opts, pool)
        assert_rows_agree(engine.results, out.results)
        if attention == "none":
            assert engine.attention is None and out.attention is None
        else:
            assert set(pl.from_arrow(out.attention)["condition_id"].to_list()) == {0}
            assert_attention_agrees(engine.attention, out.attention)


@pytest.mark.parametrize("run", [run_chunk, run_batched_peer, run_seed_loop])
def test_the_analytic_flop_count_is_torchs(model, problems, run):
    """engine/runs/flops.py counts from the calls alone what FlopCounterMode counts from every matmul
    (two problems of different lengths: the engine pads them into one batch).

    In eager attention: FlopCounterMode does not count CPU SDPA's fused kernel (it reports 0 for it), so
    with the engine's fused passes torch's total falls short by exactly their query-key pairs."""
    model.fused_attention = False
    try:
        with FlopCounterMode(display=False) as torch_count, counting(model) as ours:
            run(model, problems[:2], few())
    finally:
        model.fused_attention = True
    assert ours.flops == torch_count.get_total_flops()
    assert ours.calls > 0 and ours.positions > 0
    if run is run_chunk:  # the same count with the fused passes: only SDPA's pairs are missing from torch's
        with FlopCounterMode(display=False) as torch_count, counting(model) as fused:
            run(model, problems[:2], few())
        assert fused.flops == ours.flops
        assert 0 < fused.flops - torch_count.get_total_flops() <= fused.per_pair * fused.pairs


def test_bench_refuses_bad_rounds_and_seed_problems_before_loading_anything():
    with pytest.raises(ValueError, match="--rounds"):
        bench_engine(rounds=2)
    with pytest.raises(ValueError, match="--seed-problems"):
        bench_engine(problems=2, seed_problems=3)


@pytest.mark.slow
def test_bench_engine_times_engine_and_peers_interleaved():
    out = CliRunner().invoke(
        cli, ["bench", "engine", "--problems", "2", "--seed-problems", "1", "--rounds", "3", "--json"]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert list(report["paths"]) == list(PATHS)
    assert [r["round"] for r in report["load_average"]] == [1, 2, 3]
    engine, seed = report["paths"]["engine"], report["paths"]["seed_loop"]
    assert engine["problems"] == 2 and seed["problems"] == 1
    for path in report["paths"].values():
        assert len(path["rounds"]) == 3 and path["skipped"] == []
        walls = [r["wall_s"] / path["problems"] for r in path["rounds"]]
        assert path["wall_s_per_problem"]["min"] == pytest.approx(min(walls), rel=1e-3)
        assert 0 < path["of_peak"] < 1
    # the engine shares the question and the first k thoughts: it does fewer FLOPs than either peer
    assert engine["gflop_per_problem"] < report["paths"]["batched_peer"]["gflop_per_problem"]
    assert engine["gflop_per_problem"] < seed["gflop_per_problem"]
    speedup = report["engine_speedup"]["seed_loop"]["wall_median"]
    ratio = seed["wall_s_per_problem"]["median"] / engine["wall_s_per_problem"]["median"]
    assert speedup == pytest.approx(ratio, rel=1e-2)
    assert (
        report["matmul_peak"]["float32"]["gflops"] > 0 and report["torch_threads"] == torch.get_num_threads()
    )
    lines = bench_engine_lines(report)
    assert any(line.startswith("seed loop") for line in lines)
    assert any("load average" in line for line in lines)
