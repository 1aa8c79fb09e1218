"""The fast paths change no stored number: fused (SDPA) attention where no weights are read, the answer
phase's two-branch teacher forcing, its row blocks, and decoding resumed at the first disagreement.

Every check compares against a slower way of computing the same thing: eager attention everywhere,
each branch fed alone, one row per block. (tests/test_engine.py compares the whole batched engine with
the one-condition-at-a-time reference on rows that both keep and change the baseline answer.)
"""

from __future__ import annotations

import polars as pl
import pytest
import torch

import engine.interventions.staged as staged
from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import DEFAULT_METHODS, build_conditions
from engine.interventions.options import EngineOptions
from engine.interventions.reference import run_reference
from engine.model.checkpoints import load_model
from ingest.datasets import synthetic_problems

LAYER = 3
MEASURES = ("kl_first", "kl_answer", "kl_max", "js_first", "js_answer", "entropy_first", "entropy_answer")
KEYS = ["problem_id", "condition_id"]
ATTENTION_KEYS = ["problem_id", "condition_id", "layer", "head", "dst", "src"]


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(6, seed=7)


@pytest.fixture(scope="module")
def tiny():
    """The bundled trained model: corruptions really move its answers (a random model's barely move)."""
    return load_model("gpt2-tiny")


def options(attention="all") -> EngineOptions:
    conditions = tuple(build_conditions([LAYER], (*DEFAULT_METHODS[:2], "shuffle")))
    return EngineOptions((LAYER,), conditions, 0, attention)


def run(model, problems, fused: bool, opts=None):
    before = model.fused_attention
    model.fused_attention = fused
    try:
        return run_chunk(model, problems, opts or options())
    finally:
        model.fused_attention = before


def assert_same_rows(a, b, tolerance: float) -> None:
    a, b = a.results.sort(KEYS), b.results.sort(KEYS)
    assert a.select(KEYS).equals(b.select(KEYS))
    assert a["answer_text"].to_list() == b["answer_text"].to_list()
    for column in (*MEASURES, "logp_gold", "disruption"):
        diff = (a[column] - b[column]).abs().max()
        assert diff is None or diff <= tolerance, (column, diff)
        assert a[column].null_count() == b[column].null_count(), column


def assert_same_attention(a, b, tolerance: float) -> None:
    wa = pl.from_arrow(a.attention).sort(ATTENTION_KEYS)
    wb = pl.from_arrow(b.attention).sort(ATTENTION_KEYS)
    assert wa.select(ATTENTION_KEYS).equals(wb.select(ATTENTION_KEYS))
    diff = (wa["weight"] - wb["weight"]).abs().max()
    assert diff is not None and diff <= tolerance, diff


def test_fused_attention_changes_no_stored_number(tiny, problems):
    fused, eager = run(tiny, problems, True), run(tiny, problems, False)
    # the tolerances batched-vs-reference already holds (tests/test_engine.py): float rounding only
    assert_same_rows(fused, eager, 1e-4)
    assert_same_attention(fused, eager, 1e-5)
    # the comparison has teeth: corruptions move the answers by far more than the tolerance
    changed = fused.results.filter(pl.col("method") != "baseline")["kl_max"]
    assert changed.max() > 1.0


def test_fused_attention_is_what_runs_where_no_weights_are_read(random_codi, problems):
    """Eager only in the passes that return weights (captured thoughts, EOT); SDPA everywhere else."""
    seen: list[tuple[str, bool]] = []
    layer = random_codi.codi.base_model.h[0].attn

    def record(module, args, kwargs):
        seen.append((module.config._attn_implementation, args[0].shape[1] > 1))

    handle = layer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run(random_codi, problems[:2], True, options("none"))
    finally:
        handle.remove()
    kernels = {kernel for kernel, _ in seen}
    assert kernels == {"sdpa", "eager"}
    eager = [many for kernel, many in seen if kernel == "eager"]
    assert eager and not any(eager)  # eager only for single-token steps (EOT), never a long pass
    assert random_codi.codi.config._attn_implementation == "eager"  # restored after every pass


def test_branches_equal_each_branch_fed_alone(random_codi, problems):
    model = random_codi
    batch = model.question_batch([p.question for p in problems[:3]])
    state, _ = model.latent_loop(batch)
    a = torch.randint(0, model.base_vocab_size, (3, 4))
    b = torch.randint(0, model.base_vocab_size, (3, 6))
    point = state.checkpoint()
    together = model.branches(state, [a, b])
    assert state.cache.get_seq_length() == point[0] + 10
    state.restore(point)
    alone = []
    for ids in (a, b):
        alone.append(model.step(state, model.embed(ids), head=False).last_hidden_state)
        state.restore(point)
    for got, want in zip(together, alone, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_row_blocks_bound_the_log_probs_and_change_nothing(tiny, problems, monkeypatch):
    """One row per block: no [rows, positions, vocab] tensor ever holds more than a block, same rows."""
    whole = run(tiny, problems, True, options("none"))
    shapes: list[tuple[int, ...]] = []
    log_probs = staged.log_probs

    def spy(logits):
        shapes.append(tuple(logits.shape))
        return log_probs(logits)

    monkeypatch.setattr(staged, "ROW_BLOCK_FLOATS", 1)  # fewer than one row's worth: one row per block
    monkeypatch.setattr(staged, "log_probs", spy)
    blocked = run(tiny, problems, True, options("none"))
    assert shapes and max(s[0] for s in shapes) == 1
    assert_same_rows(whole, blocked, 1e-5)


@pytest.mark.parametrize("together", [0.0, 1.01])
def test_gold_answers_in_the_shared_pass_or_their_own_agree(tiny, problems, monkeypatch, together):
    """The gold branch fed beside the baseline answer (every row) or afterwards (only the rows whose
    problem needs it, on a copy of their cache): the same log p(gold), and both ways are exercised."""
    default = run(tiny, problems, True, options("none"))
    baselines = default.results.filter(pl.col("method") == "baseline")
    assert 0 < baselines["correct"].sum() < baselines.height  # some problems need the gold pass, some not
    monkeypatch.setattr(staged, "GOLD_TOGETHER", together)
    forced = run(tiny, problems, True, options("none"))
    assert_same_rows(default, forced, 1e-5)


@pytest.mark.slow  # the reference runs every condition alone
def test_answers_resume_at_the_first_disagreement_like_decoding_from_eot(tiny, problems):
    """Rows whose argmax leaves the baseline answer at position j > 0 are decoded from j on; their answers
    equal the reference's, which decodes every condition from EOT with nothing shared."""
    opts = options("none")
    batched = run_chunk(tiny, problems[:2], opts).results.sort(KEYS)
    reference = run_reference(tiny, problems[:2], opts).results.sort(KEYS)
    assert batched["answer_text"].to_list() == reference["answer_text"].to_list()
    baseline = batched.filter(pl.col("method") == "baseline")
    base = baseline.select("problem_id", pl.col("answer_text").alias("b"))
    rows = batched.join(base, on="problem_id").filter(pl.col("method") != "baseline")
    moved = rows.filter(pl.col("answer_text") != pl.col("b"))
    common = [len(_common_prefix(a, b)) for a, b in zip(moved["answer_text"], moved["b"], strict=True)]
    assert moved.height and max(common) > 0  # some rows share a prefix with the baseline, then diverge


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
