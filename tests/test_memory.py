"""A chunk's memory estimated before it runs (engine/runs/memory.py), and `run --max-memory` (issue 19,
part 4).

The terms are checked against what the engine really allocates (the staged KV cache, the log-probs, the
captured attention, a chunk's Arrow rows), against hand-counted shapes of GPT-2 and LLaMA, and the whole
estimate against the measured peak of real runs in fresh processes (the slow test at the end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from faults_helpers import REPO, cli, fetch, user_error

from engine.interventions.chunk import gold_batch, run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.kvcache import StagedCache
from engine.interventions.loop import run_rows, start_questions
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan
from engine.model.checkpoints import load_model
from engine.runs.config import RunConfig
from engine.runs.memory import (
    RUNTIME_BYTES,
    ModelShape,
    estimate_chunk_memory,
    estimate_run_memory,
    fit_batch_size,
    parse_size,
)
from engine.runs.plan import plan_run, select_problems

GPT2 = ModelShape(  # GPT-2 124M as the official CODI checkpoint has it: vocabulary 50,257 + 3
    layers=12, heads=12, kv_heads=12, head_dim=64, hidden=768, intermediate=3072, vocab=50260,
    dtype_bytes=4, weights_bytes=500_000_000,
)  # fmt: skip
LLAMA_1B = ModelShape(  # LLaMA-3.2-1B: grouped-query attention, 8 key/value heads for 32 query heads
    layers=16, heads=32, kv_heads=8, head_dim=64, hidden=2048, intermediate=8192, vocab=128259,
    dtype_bytes=2, weights_bytes=2_500_000_000, device="cuda",
)  # fmt: skip


def term(estimate, name: str) -> int:
    found = {t.name: t.nbytes for t in estimate.throughout}
    for terms in estimate.steps.values():
        found.update({t.name: t.nbytes for t in terms})
    return found[name]


@pytest.fixture(scope="module")
def tiny():
    return load_model("gpt2-tiny", device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def plan(tiny):
    return plan_run(RunConfig(problems=8, device="cpu"), model=tiny)


# --- the terms against what the engine allocates --------------------------------------------------
def test_kv_terms_are_what_the_staged_cache_allocates(tiny):
    problems = select_problems(RunConfig(problems=3))
    _, state, _ = start_questions(tiny, [p.question for p in problems])
    question = state.cache.get_seq_length()  # the padded question and BOT: staged.py's question_length
    rows, capacity = 3 * 42, question + 7 + 24  # staged.py: question + 6 thoughts + EOT + max_new_tokens
    cache = StagedCache.allocate(state.cache, rows, capacity)
    allocated = sum(layer.key_buffer.nbytes + layer.value_buffer.nbytes for layer in cache.layers)
    copy = cache.select(torch.arange(rows), capacity)  # what staged._select takes for every row
    copied = sum(layer.key_buffer.nbytes + layer.value_buffer.nbytes for layer in copy.layers)
    estimate = estimate_chunk_memory(tiny, 3, 43, question)
    assert term(estimate, "staged_kv_cache") == allocated == 126 * 6 * 2 * 8 * capacity * 16 * 4
    assert term(estimate, "kv_cache_copy") == copied


def test_log_prob_and_attention_terms_match_a_real_baseline_pass(tiny):
    problems = select_problems(RunConfig(problems=2))
    _, state, z = start_questions(tiny, [p.question for p in problems])
    base = run_rows(
        tiny, state, z, PatchPlan(), None, lambda t: gold_batch(tiny, t, problems), True, (3,), 24
    )
    rows, answer = base.forced_logp.shape[:2]
    # two "condition rows": one problem under three conditions; answers as long as the real ones
    estimate = estimate_chunk_memory(
        tiny, 1, rows + 1, state.cache.get_seq_length(), max_new_tokens=answer, answer_length=answer
    )
    assert term(estimate, "forced_log_probs") == base.forced_logp.nbytes  # [rows, T, V] float32
    assert term(estimate, "captured_attention") == base.attention.nbytes  # [rows, layers, heads, 7, 9]
    assert term(estimate, "forced_logits") == 3 * base.forced_logp.nbytes


def test_row_terms_match_a_real_chunk(tiny, plan):
    conditions = tuple(build_conditions([3], ("zero", "gauss"), (1.0,)))
    out = run_chunk(tiny, plan.problems[:2], EngineOptions((3,), conditions, 0, "all"), {})
    longest = max(len(tiny.encode_question(p.question)) for p in plan.problems[:2])
    chunk_rows = term(estimate_chunk_memory(tiny, 2, len(conditions), longest), "writer_queue") / 3
    assert out.attention.num_rows == 2 * 13 * 6 * 8 * 42  # every condition's rows x layers x heads x 42 pairs
    real = out.attention.nbytes + out.results.estimated_size()
    assert 0.95 < chunk_rows / real < 1.15, (chunk_rows, real)


# --- the inventory's arithmetic, by hand ----------------------------------------------------------
def test_gpt2_at_batch_8_counts_the_issue_s_tensors():
    estimate = estimate_chunk_memory(GPT2, 8, 43, 80)  # one patch layer: 42 corrupted conditions
    rows, positions = 8 * 42, 80 + 7 + 24
    assert estimate.rows == rows
    assert term(estimate, "staged_kv_cache") == rows * 12 * 2 * 12 * positions * 64 * 4
    assert term(estimate, "forced_log_probs") == rows * 24 * 50257 * 4 == 1_621_089_792  # 1.6 GB per tensor
    assert term(estimate, "forced_logits") == 3 * 1_621_089_792
    assert term(estimate, "measure_copies") == int(6.25 * 1_621_089_792)
    assert term(estimate, "runtime") == RUNTIME_BYTES
    peak = estimate.throughout + estimate.steps[estimate.peak_step]
    assert estimate.peak == sum(t.nbytes for t in peak)
    assert estimate.peak == max(
        sum(t.nbytes for t in estimate.throughout + terms) for terms in estimate.steps.values()
    )
    # the gold pass over every row: both caches, the kept log-probs and 3 more of them, > 6.25 of them alone
    assert estimate.peak_step == "forced pass (logits)"
    assert term(estimate, "measure_copies") < sum(t.nbytes for t in estimate.steps["forced pass (logits)"])


def test_row_blocks_bound_the_forced_pass():
    whole = estimate_chunk_memory(GPT2, 8, 43, 80)
    blocked = estimate_chunk_memory(GPT2, 8, 43, 80, row_block=32)
    assert term(blocked, "forced_logits") == 3 * 32 * 24 * 50257 * 4
    assert (
        term(blocked, "forced_log_probs") == 8 * 42 * 24 * 8 * 4
    )  # per-position scalars, not the vocabulary
    # the cache is not blocked, but with row blocks it holds both answer branches (T + G after EOT)
    assert term(blocked, "staged_kv_cache") == 8 * 42 * 12 * 2 * 12 * (80 + 7 + 24 + 24) * 64 * 4
    assert term(whole, "staged_kv_cache") == 8 * 42 * 12 * 2 * 12 * (80 + 7 + 24) * 64 * 4
    assert blocked.peak < 0.7 * whole.peak  # what is left is mostly the KV caches (both branches)
    assert (
        estimate_chunk_memory(GPT2, 8, 43, 80, row_block=10**6).peak
        == estimate_chunk_memory(GPT2, 8, 43, 80, row_block=8 * 42).peak
    )  # a block larger than the chunk is the chunk


def test_attention_none_and_baseline_store_less():
    everything = estimate_chunk_memory(GPT2, 4, 43, 60)
    baseline = estimate_chunk_memory(GPT2, 4, 43, 60, attention="baseline")
    none = estimate_chunk_memory(GPT2, 4, 43, 60, attention="none")
    assert term(everything, "captured_attention") == 4 * 42 * 12 * 12 * 7 * 9 * 4
    assert term(baseline, "captured_attention") == term(none, "captured_attention") == 0
    # the writer holds 3 chunks of rows: results (150 B) and attention (18 B, 12 x 12 x 42 per condition)
    assert term(everything, "writer_queue") == 3 * (4 * 43 * 150 + 4 * 43 * 12 * 12 * 42 * 18)
    assert term(baseline, "writer_queue") == 3 * (4 * 43 * 150 + 4 * 12 * 12 * 42 * 18)
    assert term(none, "writer_queue") == 3 * 4 * 43 * 150
    assert none.peak < baseline.peak < everything.peak


def test_grouped_query_attention_and_bf16_on_cuda():
    estimate = estimate_chunk_memory(LLAMA_1B, 2, 43, 100, answer_length=30)
    positions = 100 + 7 + 30  # a gold answer longer than max_new_tokens widens the cache
    assert term(estimate, "staged_kv_cache") == 84 * 16 * 2 * 8 * positions * 64 * 2  # 8 kv heads, bf16
    assert term(estimate, "forced_log_probs") == 84 * 24 * 128256 * 4  # baseline answers: max_new_tokens
    assert term(estimate, "forced_logits") == 3 * 84 * 30 * 128256 * 4  # the gold pass: 30 positions
    # under CUDA the peak is the GPU's: the runtime and the writer's rows are host memory
    device = [t for t in estimate.at_peak()]
    assert all(t.on_device for t in device) and "runtime" not in {t.name for t in device}
    assert "cuda_context" in {t.name for t in device}
    assert estimate.host_peak < estimate.peak
    assert term(estimate, "runtime") <= estimate.host_peak


def test_bad_arguments_are_refused():
    for kwargs, fragment in (
        ({"attention": "some"}, "attention"),
        ({"row_block": 0}, "row_block"),
        ({"answer_length": 0}, "answer_length"),
    ):
        with pytest.raises(ValueError, match=fragment):
            estimate_chunk_memory(GPT2, 1, 43, 10, **kwargs)
    with pytest.raises(ValueError, match="at least one problem"):
        estimate_chunk_memory(GPT2, 0, 43, 10)


# --- --max-memory ---------------------------------------------------------------------------------
def test_peak_grows_with_the_batch_and_the_fit_is_the_largest(plan):
    peaks = [estimate_run_memory(plan, n).peak for n in range(1, 9)]
    assert peaks == sorted(set(peaks))  # strictly increasing
    assert fit_batch_size(plan, peaks[2]).n_problems == 3
    assert fit_batch_size(plan, peaks[2] - 1).n_problems == 2
    assert fit_batch_size(plan, 10**12).n_problems == 8  # never more than the run's problems
    assert estimate_run_memory(plan, 100).n_problems == 8


def test_too_small_a_budget_says_what_would_fit(tiny):
    plan = plan_run(RunConfig(problems=4, layers="all", device="cpu"), model=tiny)
    one = estimate_run_memory(plan, 1)
    with pytest.raises(ValueError) as caught:
        fit_batch_size(plan, one.peak - 1, "X")
    message = str(caught.value)
    assert message.startswith("--max-memory X: even 1 problem per chunk needs ~") and "\n" not in message
    assert "it would fit with one patch layer (--layer L)" in message
    with pytest.raises(ValueError, match="less than the .* runtime and gpt2-tiny's weights"):
        fit_batch_size(plan, RUNTIME_BYTES // 2, "300MB")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4GB", 4 * 10**9),
        ("800MB", 800 * 10**6),
        ("1.5G", 1_500_000_000),
        ("512 MiB", 512 * 2**20),
        ("2gib", 2 * 2**30),
        ("123456B", 123456),
        (123456, 123456),
    ],
)
def test_sizes_parse(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["abc", "4", "0GB", "-1GB", "4XB", "GB", "nan", "1e3GB", 0, ""])
def test_bad_sizes_are_one_line_errors(text):
    with pytest.raises(ValueError, match=r"^--max-memory must be a") as caught:
        parse_size(text)
    assert "\n" not in str(caught.value)


def test_cli_refuses_bad_max_memory_before_the_model_loads(tmp_path):
    db = tmp_path / "w"
    user_error(cli("run", "--max-memory", "lots", "--db", db), "--max-memory", "4GB")
    user_error(cli("run", "--max-memory", "1GB", "--batch-size", 4, "--db", db), "not both")
    user_error(cli("run", "--max-memory", "1GB", "--shard", "0/2", "--db", db), "--batch-size")
    assert not db.exists()


def test_cli_max_memory_picks_the_batch_and_leaves_the_config_alone(tmp_path, tiny):
    flags = {"problems": 4, "methods": "zero", "attention": "none", "device": "cpu"}
    planned = plan_run(RunConfig(**flags), model=tiny)
    budget = estimate_run_memory(planned, 2).peak  # exactly what 2 problems per chunk need
    assert plan_run(RunConfig(**flags, max_memory=f"{budget}B"), model=tiny).config == planned.config
    db = tmp_path / "w"
    out = cli(
        "run", "--problems", 4, "--methods", "zero", "--attention", "none", "--device", "cpu",
        "--max-memory", f"{budget}B", "--db", db, "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.stderr
    memory = json.loads(out.stdout)["memory"]
    assert (memory["batch_size"], memory["peak_bytes"], memory["max_memory_bytes"]) == (2, budget, budget)
    assert "running 2 problems per chunk (12 condition rows), estimated peak" in out.stderr
    assert fetch(db, "SELECT count(*) FROM run_problems") == [(4,)]
    assert "max_memory" not in json.loads(fetch(db, "SELECT config_json FROM runs")[0][0])


# --- the estimate against real runs ---------------------------------------------------------------
# Measured on gpt2-tiny (the 2-core CPU machine, 2026-11-30): the estimate less the runtime and the weights,
# over the growth in resident memory from before the first chunk to the run's peak. The estimate is a
# bound for the engine's worst case, every condition row taking its own copy of the KV cache and answers
# max_new_tokens long: gpt2-tiny on GSM8K, which it never answers right, is that case. Before the engine's
# row blocks it measured 1.08 (one layer, 16 problems) and 1.07 (--layers all, 8 problems); after them
# (the answer pass over every row with both branches, the selected rows' copies reused between chunks)
# 1.30-1.32 (one layer, 8 problems); the synthetic problems, whose baselines are mostly right and whose
# answers are 8 tokens, measured 1.48 and 2.12 before, and under 2.4 (one layer) and 2.76 (--layers all)
# after. Below 1.0 (the bound broken) fails, and so does a bound looser than measured by a fair margin.
WORST, TYPICAL = (1.0, 1.5), (1.0, 3.5)
RUNS = {
    "one-layer": (["--layer", "3", "--problems", "16"], TYPICAL),
    "all-layers": (["--layers", "all", "--problems", "8"], TYPICAL),
    "gsm8k-worst-case": (
        ["--dataset", "gsm8k-test", "--skip-invalid", "--layer", "3", "--problems", "8"],
        WORST,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(RUNS))
def test_estimate_bounds_a_real_run(tmp_path, case):
    """A real `run` in a fresh process, by its own measurement (its resident memory before the first
    chunk and its peak over the chunks, VmHWM reset before them: both from /proc) against its estimate
    less the runtime and the weights."""
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("the resident memory before the first chunk is read from /proc (Linux)")
    flags, (low, high) = RUNS[case]
    command = [
        sys.executable,
        "cli.py",
        "run",
        *flags,
        "--device",
        "cpu",
        "--db",
        str(tmp_path / "w"),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    memory = summary["memory"]
    grown = memory["process_peak_rss_bytes"] - memory["rss_before_chunks_bytes"]
    estimate = memory["peak_bytes"] - sum(memory["terms"][name]["bytes"] for name in ("runtime", "weights"))
    seen = {k: memory[k] for k in ("batch_size", "rss_before_chunks_bytes", "peak_rss_before_chunks_bytes")}
    assert low <= estimate / grown <= high, (estimate, grown, estimate / grown, seen, memory["peak_reset"])
    if case == "gsm8k-worst-case":
        assert summary["baseline_accuracy"] == 0.0  # every row is re-decoded and gold-forced: the worst case
