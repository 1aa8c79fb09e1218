"""The engine's measurements (SPEC 3-5, 11): each test fails if the quantity is computed wrongly."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import DEFAULT_METHODS, build_conditions, select_donor_pool
from engine.interventions.loop import SRC_CODES, run_rows, start_questions
from engine.interventions.measures import kl_divergence, log_probs
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan, decoder_blocks
from engine.interventions.reference import run_reference
from engine.model.answer_tokens import number_token_index
from engine.model.positions import N_THOUGHTS
from ingest.datasets import synthetic_problems

LAYER = 2  # n_layers // 2 of the 4-layer fixture: blocks above it exist


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(5, seed=2)


@pytest.fixture(scope="module")
def pool(random_codi, problems):
    ids = set(select_donor_pool(problems, seed=0, size=3))
    opts = options(methods=())
    return run_chunk(random_codi, [p for p in problems if p.problem_id in ids], opts).sites


def options(methods=DEFAULT_METHODS + ("clean", "mean"), seed=0, attention="all", layers=(LAYER,)):
    """Short answers (8 tokens) keep the random model's endless outputs cheap."""
    return EngineOptions(
        tuple(layers), tuple(build_conditions(list(layers), methods)), seed, attention, max_new_tokens=8
    )


ATTENTION_KEYS = ["problem_id", "condition_id", "layer", "head", "dst", "src"]


def sorted_attention(table) -> pl.DataFrame:
    return pl.from_arrow(table).with_columns(pl.col("problem_id").cast(pl.Utf8)).sort(ATTENTION_KEYS)


@pytest.fixture(scope="module")
def batched(random_codi, problems, pool):
    return run_chunk(random_codi, problems[:3], options(), pool)


def test_row_counts_and_condition_order(batched):
    results = batched.results
    assert results.height == 3 * (
        1 + 6 * 9
    )  # baseline + 6 thoughts x (zero, 4 gauss, random, shuffle, clean, mean)
    first = results.filter(pl.col("problem_id") == results["problem_id"][0])
    assert first["method"][0] == "baseline" and first["condition_id"][0] == 0
    # 7 queries x (Q, BOT, visible thoughts, EOT) = 42 visible pairs per layer and head, for every condition
    per_condition = 4 * 4 * 42
    assert batched.attention.num_rows == results.height * per_condition


def test_clean_control_reproduces_baseline(batched):
    results = batched.results
    base = results.filter(pl.col("method") == "baseline").select(
        "problem_id", pl.col("answer_text").alias("base")
    )
    clean = results.filter(pl.col("method") == "clean").join(base, on="problem_id")
    assert (clean["answer_text"] == clean["base"]).all()
    for col in ("kl_first", "kl_answer", "kl_max", "js_first", "disruption"):
        assert (clean[col].drop_nulls().abs() < 1e-6).all(), col
    att = pl.from_arrow(batched.attention)
    conds = results.select("problem_id", "condition_id", "method")
    att = att.with_columns(pl.col("problem_id").cast(pl.Utf8)).join(conds, on=["problem_id", "condition_id"])
    keys = ["problem_id", "layer", "head", "dst", "src"]
    b = att.filter(pl.col("method") == "baseline").select(*keys, pl.col("weight").alias("w0"))
    c = att.filter(pl.col("method") == "clean").join(b, on=keys)
    assert c.height == 6 * b.height
    assert (c["weight"] - c["w0"]).abs().max() < 1e-5


@pytest.fixture(scope="module")
def reference(random_codi, problems, pool):
    """The one-condition-at-a-time path on problem 1 (which `batched` ran beside two others)."""
    return run_reference(random_codi, problems[1:2], options(), pool)


def test_batched_matches_sequential_reference(problems, batched, reference):
    ref = reference
    a = batched.results.filter(pl.col("problem_id") == problems[1].problem_id)
    a, b = a.sort("problem_id", "condition_id"), ref.results.sort("problem_id", "condition_id")
    assert a.height == b.height
    assert a["answer_text"].to_list() == b["answer_text"].to_list()
    # both sides of the batched engine's speculative decoding are exercised: rows that keep the
    # baseline answer (verified by teacher forcing) and rows that diverge (decoded token by token)
    baseline_text = a["answer_text"][0]
    assert 0 < (a["answer_text"] != baseline_text).sum() < a.height - 1
    assert a["donor_problem_id"].to_list() == b["donor_problem_id"].to_list()
    for col in ("kl_first", "kl_answer", "kl_max", "js_first", "entropy_first", "logp_gold", "disruption"):
        diff = (a[col] - b[col]).abs().max()
        assert diff is None or diff < 1e-4, (col, diff)
    wa = sorted_attention(batched.attention).filter(
        pl.col("problem_id").is_in(a["problem_id"].unique().implode())
    )
    wb = sorted_attention(ref.attention)
    assert wa.select(ATTENTION_KEYS).equals(wb.select(ATTENTION_KEYS))
    assert (wa["weight"] - wb["weight"]).abs().max() < 1e-4


def test_rows_do_not_depend_on_batch_composition(random_codi, problems, pool, batched):
    alone = run_chunk(random_codi, problems[1:2], options(), pool).results
    together = batched.results.filter(pl.col("problem_id") == problems[1].problem_id)
    assert alone["answer_text"].to_list() == together["answer_text"].to_list()
    assert (alone["kl_max"] - together["kl_max"]).abs().max() < 1e-4


def test_attention_rows_sum_to_one_and_keys_are_causal(batched):
    att = pl.from_arrow(batched.attention)
    sums = att.group_by("problem_id", "condition_id", "layer", "head", "dst").agg(pl.col("weight").sum())
    assert (sums["weight"] - 1).abs().max() < 1e-3
    assert set(att["src"].unique()) == set(SRC_CODES.tolist())
    bad = att.filter((pl.col("dst") < 6) & (pl.col("src") > pl.col("dst")))  # a thought never sees later ones
    assert bad.height == 0


def test_kl_positive_whenever_the_answer_flips(batched):
    results = batched.results
    base = results.filter(pl.col("method") == "baseline").select(
        "problem_id", pl.col("answer_text").alias("base")
    )
    changed = results.join(base, on="problem_id").filter(pl.col("answer_text") != pl.col("base"))
    assert changed.height > 0
    assert (changed["kl_max"] > 1e-6).all()


def test_kl_known_pair_and_vocabulary_invariance():
    p = torch.tensor([0.5, 0.5])
    q = torch.tensor([0.9, 0.1])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(p.log(), q.log()).item() == pytest.approx(expected, abs=1e-6)
    # the same distributions inside a 50,000-token vocabulary whose other tokens have probability 0:
    # a sum over the vocabulary is unchanged (batchmean on a 1-D vector would divide by 50,000)
    big_p = torch.full((50_000,), float("-inf"))
    big_q = big_p.clone()
    big_p[:2], big_q[:2] = p.log(), q.log()
    assert kl_divergence(big_p, big_q).item() == pytest.approx(expected, abs=1e-6)
    logits = torch.randn(3, 10)
    assert kl_divergence(log_probs(logits), log_probs(logits)).abs().max() < 1e-7


def test_gauss_noise_is_seeded_and_independent_per_condition(random_codi, problems, pool):
    one = run_chunk(random_codi, problems[:1], options(("gauss",), seed=5), pool).results
    two = run_chunk(random_codi, problems[:1], options(("gauss",), seed=5), pool).results
    other = run_chunk(random_codi, problems[:1], options(("gauss",), seed=6), pool).results
    assert one["kl_max"].to_list() == two["kl_max"].to_list()
    assert one["kl_max"].to_list() != other["kl_max"].to_list()


def test_random_donor_varies_and_is_never_the_problem_itself(batched, problems):
    rows = batched.results.filter(pl.col("method") == "random")
    assert (rows["donor_problem_id"] != rows["problem_id"]).all()
    assert rows["donor_problem_id"].n_unique() > 1
    assert (rows["donor_thought"] == rows["thought"]).all()


def test_shuffle_takes_another_thought_of_the_same_problem(batched):
    rows = batched.results.filter(pl.col("method") == "shuffle")
    assert (rows["donor_thought"] != rows["thought"]).all()
    assert (rows["donor_problem_id"] == rows["problem_id"]).all()
    assert rows["donor_thought"].n_unique() > 1


def _record_hidden(model, plan, question, layers=None):
    """Hidden states of every forward call of one latent loop: list of tuples (per call) of [1, T, d]."""
    calls = []
    base = model.codi.base_model  # every pass runs it, with or without the LM head (CodiModel.step head=)
    asks = base.register_forward_pre_hook(
        lambda _m, args, kw: (args, {**kw, "output_hidden_states": True}), with_kwargs=True
    )
    records = base.register_forward_hook(
        lambda _m, _a, out: calls.append(tuple(h.clone() for h in out.hidden_states))
    )
    try:
        _, state, z = start_questions(model, [question])
        gold = torch.tensor([[model.pad_id]])
        run_rows(model, state, z, plan, None, gold, False, layers, 4)
    finally:
        asks.remove()
        records.remove()
    return calls


@pytest.mark.parametrize("thought", [0, 3, 5])
def test_patch_site_is_block_output_at_the_target_thought_only(random_codi, problems, thought):
    model = random_codi
    value = torch.full((1, model.codi.config.hidden_size), 7.0)
    plan = PatchPlan()
    plan.add(LAYER, thought, torch.tensor([0]), value)
    next_block_inputs = []
    handle = decoder_blocks(model.codi)[LAYER + 1].register_forward_pre_hook(
        lambda _m, args: next_block_inputs.append(args[0][:, -1].clone())
    )
    with torch.no_grad():
        clean = _record_hidden(model, PatchPlan(), problems[0].question)
        next_block_inputs.clear()
        patched = _record_hidden(model, plan, problems[0].question)
    handle.remove()
    assert torch.equal(next_block_inputs[1 + thought][0], value[0])  # what block L+1 really receives
    # call 0 is the question pass (never patched, so the question's last token is untouched)
    for layer_states_clean, layer_states_patched in zip(clean[0], patched[0], strict=True):
        torch.testing.assert_close(layer_states_clean, layer_states_patched, rtol=0, atol=0)
    for k in range(thought):  # thoughts before Tk: unchanged at every layer
        for hc, hp in zip(clean[1 + k], patched[1 + k], strict=True):
            torch.testing.assert_close(hc, hp, rtol=0, atol=0)
    step = patched[1 + thought]
    for layer in range(LAYER + 1):  # inputs of blocks 0..L at Tk: unchanged
        torch.testing.assert_close(clean[1 + thought][layer], step[layer], rtol=0, atol=0)
    assert torch.equal(step[LAYER + 1][0, -1], value[0])  # output of block L at Tk is the new value
    assert not torch.equal(clean[1 + thought][LAYER + 1][0, -1], value[0])


def test_corruption_leaves_attention_of_earlier_thoughts_unchanged(reference):
    """Attention 'token k' and ablation 'token k' are the same position (a research-code bug).

    Checked on the reference path, which recomputes every thought (the batched engine copies the
    baseline's attention for the steps before a row's target, so there it holds by construction).
    """
    att = pl.from_arrow(reference.attention).with_columns(pl.col("problem_id").cast(pl.Utf8))
    rows = reference.results.filter((pl.col("method") == "zero") | (pl.col("method") == "baseline"))
    att = att.join(
        rows.select("problem_id", "condition_id", "method", "thought"), on=["problem_id", "condition_id"]
    )
    keys = ["problem_id", "layer", "head", "dst", "src"]
    base = att.filter(pl.col("method") == "baseline").select(*keys, pl.col("weight").alias("w0"))
    zero = att.filter(pl.col("method") == "zero").join(base, on=keys)
    earlier = zero.filter(pl.col("dst") < pl.col("thought"))
    assert (earlier["weight"] - earlier["w0"]).abs().max() < 1e-6
    at_target = zero.filter((pl.col("dst") == pl.col("thought")) & (pl.col("layer") > LAYER))
    assert (at_target["weight"] - at_target["w0"]).abs().max() > 1e-4


def test_baseline_attention_equals_a_plain_transformers_forward(random_codi, problems):
    model = random_codi
    problem = problems[0]
    inputs = []
    handle = model.codi.base_model.register_forward_pre_hook(
        lambda _m, _a, kw: inputs.append(kw.get("inputs_embeds")), with_kwargs=True
    )
    try:
        out = run_chunk(model, [problem], options(methods=()))
    finally:
        handle.remove()
    ids = torch.tensor([model.encode_question(problem.question)])
    embeds = torch.cat([model.embed(ids)] + [e for e in inputs[1:8]], dim=1)  # question+BOT, T0..T5, EOT
    with torch.no_grad():
        plain = model.codi(inputs_embeds=embeds, output_attentions=True)
    q = ids.shape[1] - 1  # question tokens; BOT at column q
    att = pl.from_arrow(out.attention)
    for layer in range(model.n_layers):
        for dst in range(N_THOUGHTS + 1):
            row = plain.attentions[layer][0, :, q + 1 + dst, :]  # [heads, keys]
            expected = [row[:, :q].sum(-1), row[:, q]] + [row[:, q + 1 + s] for s in range(min(dst + 1, 7))]
            got = att.filter((pl.col("layer") == layer) & (pl.col("dst") == dst)).sort("head", "src")
            got = torch.tensor(got["weight"].to_numpy()).reshape(model.n_heads, -1)
            torch.testing.assert_close(got, torch.stack(expected, -1).float(), atol=1e-5, rtol=1e-4)


def test_kl_answer_is_measured_at_the_number_not_the_template(random_codi):
    model = random_codi
    tokens = model.tokenizer(" The answer is: 42", add_special_tokens=False)["input_ids"]
    idx = number_token_index(model, tokens)
    assert model.tokenizer.convert_ids_to_tokens(tokens[idx]) == "4"
    assert (
        number_token_index(model, model.tokenizer(" no number", add_special_tokens=False)["input_ids"])
        is None
    )
