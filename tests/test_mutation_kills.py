"""Tests written to kill mutants that survived `python tests/mutate_engine.py` (docs/MUTATION.md): exact
values checked against independent computations (numpy, scipy, by hand). The SQL ones:
test_mutation_kills_sql.py.

The first test guards the mutation run itself: under mutmut the tests must import the mutated copy in
mutants/, not the repository's files through the editable install.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from torch import nn

from engine.interventions.chunk import build_plan
from engine.interventions.conditions import (
    ALL_METHODS,
    DEFAULT_METHODS,
    DEFAULT_SIGMAS,
    Condition,
    build_conditions,
    choose_donor_problem,
    gaussian_noise,
    parse_methods,
    parse_sigmas,
    select_donor_pool,
)
from engine.interventions.loop import RowOutcome
from engine.interventions.measures import attention_disruption, entropy, kl_divergence
from engine.interventions.methods import METHODS, pool_methods, register, replacement
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan, decoder_blocks, patched
from engine.interventions.rows import assemble, baseline_measures
from engine.model.answer_tokens import format_number, gold_tokens, number_token_index
from engine.model.answers import answer_span, parse_answer
from warehouse.vocab import STRATA, stratum_of


def test_under_mutmut_the_engine_is_imported_from_the_mutants_copy():
    if "MUTANT_UNDER_TEST" not in os.environ:
        return  # a plain pytest run: nothing to check
    import engine.interventions.measures

    here = Path.cwd().resolve()  # mutmut runs the tests inside mutants/
    where = Path(engine.interventions.measures.__file__).resolve()
    assert here.name == "mutants" and where.parents[2] == here, (
        f"under mutmut, engine is imported from {where}, not from the mutated copy in {here}: "
        "the editable install shadows mutants/ (see docs/MUTATION.md)"
    )
    assert any("__mutmut_" in name for name in vars(engine.interventions.measures)), (
        "engine.interventions.measures has no mutants"
    )


# --- engine/interventions/measures.py ----------------------------------------------------------------------
def _np_kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float((p[mask] * (np.log(p[mask]) - np.log(q[mask]))).sum())


def test_a_nan_row_leaves_the_other_rows_of_the_batch_finite():
    """NaN marks only the broken row (one overflowed corruption must not void its whole batch)."""
    rng = np.random.default_rng(5)
    p, q = rng.dirichlet(np.ones(5), size=2), rng.dirichlet(np.ones(5), size=2)
    logp, logq = torch.tensor(np.log(p)), torch.tensor(np.log(q))
    broken_p, broken_q = logp.clone(), logq.clone()
    broken_p[0, 2] = float("nan")
    broken_q[0, 3] = float("nan")
    for a, b in ((broken_p, logq), (logp, broken_q)):
        got = kl_divergence(a, b)
        assert math.isnan(got[0].item())
        assert got[1].item() == pytest.approx(_np_kl(p[1], q[1]), rel=1e-9)
    got = entropy(broken_p)
    assert math.isnan(got[0].item())
    assert got[1].item() == pytest.approx(scipy_entropy(p[1]), rel=1e-9)


def test_disruption_keeps_every_leading_axis():
    """[..., heads, keys] -> [...]: the norm is over keys, whatever the number of leading axes."""
    rng = np.random.default_rng(6)
    base, cond = rng.dirichlet(np.ones(4), size=(2, 3, 5)), rng.dirichlet(np.ones(4), size=(2, 3, 5))
    want = np.linalg.norm(base.mean(-2) - cond.mean(-2), axis=-1)  # [2, 3]
    got = attention_disruption(torch.tensor(base), torch.tensor(cond))
    assert tuple(got.shape) == (2, 3)
    assert got.numpy() == pytest.approx(want, abs=1e-6)


# --- engine/interventions/conditions.py ---------------------------------------------------------------------
def test_build_conditions_ids_and_order():
    """Baseline first with id 0, then thought-major, methods in the order given, gauss once per sigma."""
    got = build_conditions([2], ("zero", "gauss"), (0.5, 1.0))
    per_thought = [("zero", None), ("gauss", 0.5), ("gauss", 1.0)]
    want = [Condition(0, "baseline")] + [
        Condition(1 + 3 * k + j, m, 2, k, s) for k in range(6) for j, (m, s) in enumerate(per_thought)
    ]
    assert got == want
    assert got[0].is_baseline and not got[1].is_baseline


def test_parse_methods(capsys):
    assert (
        parse_methods(None) == parse_methods("") == DEFAULT_METHODS == ("zero", "gauss", "random", "shuffle")
    )
    assert parse_methods(" mean, zero ,,clean") == ("mean", "zero", "clean")
    assert capsys.readouterr().err == ""
    assert parse_methods("zero,gauss,zero,gauss,mean") == (
        "zero",
        "gauss",
        "mean",
    )  # each runs once, in order
    assert capsys.readouterr().err == (
        "note: --methods: zero, gauss repeat(s) an earlier value; each condition "
        "runs once (zero, gauss, mean)\n"
    )
    choose = "choose from " + ", ".join(ALL_METHODS)
    assert choose == "choose from zero, gauss, random, shuffle, clean, mean"
    with pytest.raises(ValueError) as err:
        parse_methods("zero,blur,Gauss")
    assert str(err.value) == f"unknown method(s) blur, Gauss; {choose}"
    with pytest.raises(ValueError) as err:
        parse_methods(" , ")
    assert str(err.value) == f"--methods names no method (' , '); {choose}"


def test_parse_sigmas(capsys):
    assert parse_sigmas(None) == parse_sigmas("") == DEFAULT_SIGMAS == (0.1, 0.5, 1.0, 2.0)
    assert parse_sigmas(" 0.5, 1,,2e-1") == (0.5, 1.0, 0.2)
    assert capsys.readouterr().err == ""
    assert parse_sigmas("0.5,0.50,1,5e-1") == (0.5, 1.0)  # equal as numbers: one sigma
    assert capsys.readouterr().err == (
        "note: --sigmas: 0.50, 5e-1 repeat(s) an earlier value; each condition runs once (0.5, 1.0)\n"
    )
    with pytest.raises(ValueError) as err:
        parse_sigmas("0.5,big")
    assert str(err.value) == "--sigmas must be comma-separated numbers, got '0.5,big'"
    for bad in ("0", "-1", "0.5,inf", "nan", " , "):
        with pytest.raises(ValueError) as err:
            parse_sigmas(bad)
        assert str(err.value) == f"--sigmas must be positive finite numbers, got {bad!r}", bad


def test_choose_donor_problem_refuses_a_pool_of_only_the_target():
    with pytest.raises(ValueError, match="^the donor pool has no problem other than the target itself$"):
        choose_donor_problem(1, ["p0"], "p0")


def test_noise_is_float32_whatever_the_default_dtype():
    want = torch.randn(8, generator=torch.Generator().manual_seed(123), dtype=torch.float32)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = gaussian_noise(123, 8)
    finally:
        torch.set_default_dtype(old)
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_donor_pool_is_spread_over_strata_sized_and_seeded():
    problems = [SimpleNamespace(problem_id=f"p{i:02d}", n_steps=1 + i % 6) for i in range(48)]
    for seed in range(5):
        pool = select_donor_pool(problems, seed, size=8)
        assert len(pool) == len(set(pool)) == 8
        steps = {p.problem_id: p.n_steps for p in problems}
        per_stratum = {s: sum(stratum_of(steps[pid]) == s for pid in pool) for s in STRATA}
        assert per_stratum == {s: 2 for s in STRATA}, seed  # round-robin: two of each of the four strata
        assert select_donor_pool(problems, seed, size=8) == pool  # a seeded draw
    assert len({tuple(select_donor_pool(problems, seed, size=8)) for seed in range(5)}) > 1
    assert len(select_donor_pool(problems, 0, size=3)) == 3  # never more than asked, mid-round


# --- engine/interventions/methods.py: replacement ---------------------------------------------------------
def test_replacement_keeps_the_site_dtype():
    """A bf16 model patches bf16 values: the noise is added in the site's dtype."""
    sites = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    opts = EngineOptions((0,), (Condition(0, "baseline"),), seed=3)
    for cond in (Condition(1, "gauss", 0, 2, 0.5), Condition(2, "zero", 0, 2), Condition(3, "clean", 0, 2)):
        value, _, _ = replacement(cond, "p0", 0, sites, {}, opts)
        assert value.dtype == torch.bfloat16, cond.method


def test_replacement_errors_say_what_is_wrong():
    sites = torch.zeros(1, 6, 4)
    opts = EngineOptions((0,), (Condition(0, "baseline"),))
    mean = Condition(1, "mean", 0, 1)
    with pytest.raises(ValueError, match=r"other than p0 itself \(pool: p0\)$"):
        replacement(mean, "p0", 0, sites, {"p0": sites}, opts)
    with pytest.raises(ValueError, match=r"other than p0 itself \(pool: empty\)$"):
        replacement(mean, "p0", 0, sites, {}, opts)
    known = "zero, gauss, random, shuffle, clean, mean"
    with pytest.raises(ValueError, match=rf"^unknown method 'bogus'; known: {known}$"):
        replacement(Condition(1, "bogus", 0, 1), "p0", 0, sites, {}, opts)


def test_the_method_registry_is_the_vocabulary():
    """Every method a run accepts (warehouse/vocab.py) has one registered function, and nothing else is
    registered; `random` and `mean` are the ones that take values from other problems."""
    assert tuple(METHODS) == ALL_METHODS
    assert all(m.name == name for name, m in METHODS.items())
    assert pool_methods(["zero", "mean", "shuffle", "random", "mean"]) == ["mean", "random"]
    assert pool_methods(DEFAULT_METHODS) == ["random"]
    with pytest.raises(ValueError, match="registered twice"):
        register("zero", lambda site: None)


def test_the_plan_lives_on_the_device_of_the_sites():
    """Rows and values go where the clean sites are (the model's device); the meta device stands in for an
    accelerator on this CPU-only machine: a tensor left on the CPU would show."""
    sites = torch.zeros(2, 1, 6, 4, device="meta")
    pool = {"d0": torch.ones(1, 6, 4), "d1": torch.ones(1, 6, 4)}  # donor values held on the CPU
    problems = [SimpleNamespace(problem_id="p0"), SimpleNamespace(problem_id="p1")]
    corrupt = [Condition(1, "zero", 0, 1), Condition(2, "random", 0, 3)]
    opts = EngineOptions((0,), (Condition(0, "baseline"), *corrupt))
    plan, _ = build_plan(problems, corrupt, sites, pool, opts)
    assert sorted(plan.entries) == [(0, 1), (0, 3)]
    for rows, values in plan.entries.values():
        assert rows.device.type == values.device.type == "meta"
        assert tuple(rows.shape) == (2,) and tuple(values.shape) == (2, 4)


# --- engine/interventions/patching.py -----------------------------------------------------------------------
class _Holder(nn.Module):
    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


def _blocks(n=2):
    return nn.ModuleList([nn.Identity() for _ in range(n)])


def test_decoder_blocks_found_on_every_supported_layout():
    gpt2, llama, bare, plain = _blocks(), _blocks(), _blocks(), _blocks()
    layouts = {
        "transformer.h": (_Holder(transformer=_Holder(h=gpt2)), gpt2),  # GPT2LMHeadModel without base_model
        "model.layers": (_Holder(model=_Holder(layers=llama)), llama),  # LlamaForCausalLM
        "h": (_Holder(h=bare), bare),  # GPT2Model
        "layers": (_Holder(layers=plain), plain),  # LlamaModel
    }
    for path, (lm, blocks) in layouts.items():
        assert decoder_blocks(lm) is blocks, path
    inner, decoy = _blocks(), _blocks()
    wrapped = _Holder(base_model=_Holder(h=inner), h=decoy)  # a wrapper (peft): its base model's blocks
    assert decoder_blocks(wrapped) is inner
    with pytest.raises(TypeError, match="^cannot find the decoder blocks of _Holder$"):
        decoder_blocks(_Holder(encoder=_blocks()))


class _AddOne(nn.Module):
    """A block returning its output as a tuple (hidden, extras...) like older transformers blocks."""

    def forward(self, x):
        return (x + 1, "present", 7)


class _TupleLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList([_AddOne(), _AddOne()])
        self.seen = []

    def forward(self, x):
        for block in self.h:
            out = block(x)
            self.seen.append(out)
            x = out[0]
        return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_patch_hook_on_tuple_outputs_and_in_the_model_dtype(dtype):
    lm = _TupleLM()
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4).to(dtype)
    value = torch.tensor([[10.0, 20.0, 30.0, 40.0]])  # float32, whatever the model's dtype
    plan = PatchPlan(step=2)
    plan.add(0, 2, torch.tensor([1]), value)
    with patched(lm, plan):
        out = lm(x)
    first = lm.seen[0]
    assert isinstance(first, tuple) and first[1:] == ("present", 7)  # the extras handed on untouched
    want = x + 1
    want[1, -1] = value[0].to(dtype)  # row 1, newest position only
    assert first[0].dtype == dtype and torch.equal(first[0], want)
    assert torch.equal(out, want + 1)


# --- engine/model/answer_tokens.py --------------------------------------------------------------------------
def _word_tokenizer(words, bos=False, eos=True):
    """A GPT-2-like byte-level tokenizer where a number and its leading space are ONE token (" 31")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "<|endoftext|>"]
    vocab = {w: i for i, w in enumerate(specials + [w.replace(" ", "\u0120") for w in words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if bos:  # like a LLaMA tokenizer: BOS added unless add_special_tokens=False
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>" if bos else None,
        eos_token="<|endoftext|>" if eos else None,
        clean_up_tokenization_spaces=False,
    )


WORDS = ["The", " answer", " is", ":", " 31", " 42", "42"]


def test_gold_tokens_keep_the_space_of_a_number_token():
    tok = _word_tokenizer(WORDS)
    model = SimpleNamespace(tokenizer=tok)
    ids = {w: tok.convert_tokens_to_ids(w.replace(" ", "\u0120")) for w in WORDS}
    base = [ids["The"], ids[" answer"], ids[" is"], ids[":"], ids[" 31"], tok.eos_token_id]
    assert number_token_index(model, base) == 4
    want = [ids["The"], ids[" answer"], ids[" is"], ids[":"], ids[" 42"], tok.eos_token_id]
    assert gold_tokens(model, base, 42.0) == want  # "The answer is: 42", never "...is:42"


def test_gold_tokens_without_bos_or_eos():
    for bos, eos in ((True, True), (False, False)):
        tok = _word_tokenizer(WORDS, bos=bos, eos=eos)
        model = SimpleNamespace(tokenizer=tok)
        ids = {w: tok.convert_tokens_to_ids(w.replace(" ", "\u0120")) for w in WORDS}
        base = [ids["The"], ids[" answer"], ids[" is"], ids[":"], ids[" 31"]]
        want = [ids["The"], ids[" answer"], ids[" is"], ids[":"], ids[" 42"]] + (
            [tok.eos_token_id] if eos else []
        )
        assert gold_tokens(model, base, 42.0) == want, (bos, eos)  # no BOS inside; no None for a missing EOS


def test_format_number():
    assert [format_number(v) for v in (7.0, -3, 0.0, 2.5, 0.25, -1.75)] == [
        "7",
        "-3",
        "0",
        "2.5",
        "0.25",
        "-1.75",
    ]


@pytest.fixture(scope="module")
def tiny():
    from engine.model.checkpoints import load_model

    return load_model("gpt2-tiny")


def _enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_number_token_index_finds_the_stated_answer(tiny):
    tok = tiny.tokenizer

    def number_at(text):
        ids = _enc(tok, text)
        i = number_token_index(tiny, ids)
        return None if i is None else tok.decode(ids[i:])

    assert number_at("The answer is 3. The answer is: 5") == "5"  # the last statement
    assert number_at("Wait, 3 apples. The answer is: 1,234") == "1,234"  # not a number before the marker
    assert number_at("12") == "12"  # a bare number, at token 0
    assert number_at("I do not know") is None
    # Always the number parse_answer reads (these three pointed elsewhere before answer_span):
    assert number_at("3 apples #### 5").strip() == "5"  # "####" counts as a marker, as in parse_answer
    assert number_at("It is 1,234 or 5").strip() == "5"  # no marker: the last number
    assert number_at("3 apples. The answer is unknown").startswith("3 apples")  # no number after it: the last


@pytest.mark.parametrize(
    "text",
    [
        "The answer is 3. The answer is: 5",
        "Wait, 3 apples. The answer is: 1,234",
        "12",
        "3 apples #### 5",
        "It is 1,234 or 5",
        "3 apples. The answer is unknown",
        "x #### 2,500.5 y",
        "1234,567 and -8.25",
        "The answer is: -1,000,000!",
        "#####7",
        "I do not know",
    ],
)
def test_answer_span_is_where_parse_answer_reads(text):
    found = answer_span(text)
    assert (None if found is None else found[0]) == parse_answer(text)
    if found is not None:
        value, start, end = found
        assert float(text[start:end].replace(",", "")) == value  # the span holds exactly that number
        assert not text[end : end + 1].isdigit()  # a whole number, not a piece of one
        assert start == 0 or not text[start - 1].isdigit()


def test_special_tokens_are_not_text(tiny):
    """A special token before the answer moves neither the number's index nor the gold answer."""
    tok, eos = tiny.tokenizer, tiny.tokenizer.eos_token_id
    text = _enc(tok, "The answer is: 31")
    idx = number_token_index(tiny, text)
    assert number_token_index(tiny, [eos] + text) == idx + 1
    assert gold_tokens(tiny, [eos] + text, 42.0) == _enc(tok, "The answer is: 42") + [eos]


# --- engine/interventions/rows.py: answers at the edges ----------------------------------------------------
def _outcome(tokens, texts, logits, eot_row, logp_gold) -> RowOutcome:
    forced = torch.log_softmax(torch.tensor(logits, dtype=torch.float32), -1)
    return RowOutcome(
        tokens=tokens,
        texts=texts,
        eot_logp=forced[:, 0],
        forced_logp=forced,
        logp_gold=torch.tensor(logp_gold, dtype=torch.float32),
        attention=None,
        eot_row=torch.tensor(eot_row, dtype=torch.float32),
        sites=None,
    )


def test_rows_for_a_bare_number_and_for_no_number(tiny):
    """p0's baseline answer is a bare number (its token 0); p1's has no number: every *_answer measure
    of p1's rows is NULL, and p0's are taken at position 0. answer_value is the parsed number (NULL when
    there is none, or when it overflows to infinity)."""
    tok = tiny.tokenizer
    problems = [
        SimpleNamespace(problem_id="p0", gold=12.0, n_steps=2),
        SimpleNamespace(problem_id="p1", gold=5.0, n_steps=3),
    ]
    base_texts, cond_texts = ["12", "I do not know"], ["13", "9" * 400]
    base_tokens, cond_tokens = [_enc(tok, t) for t in base_texts], [_enc(tok, t) for t in cond_texts]
    width, vocab = max(len(t) for t in base_tokens), 9
    rng = np.random.default_rng(8)
    base_logits, cond_logits = rng.normal(size=(2, width, vocab)) * 2, rng.normal(size=(2, width, vocab)) * 2
    base = _outcome(
        base_tokens, base_texts, base_logits, rng.dirichlet(np.ones(5), size=(2, 3)), [-1.0, -2.0]
    )
    out = _outcome(cond_tokens, cond_texts, cond_logits, rng.dirichlet(np.ones(5), size=(2, 3)), [-3.0, -4.0])
    corrupt = [Condition(1, "zero", 1, 0)]
    opts = EngineOptions((1,), (Condition(0, "baseline"), corrupt[0]), attention="none")
    rows = assemble(tiny, problems, opts, base, out, corrupt, [(None, None)] * 2).results
    got = {(r["problem_id"], r["method"]): r for r in rows.to_dicts()}
    pb, pc = np.exp(base_logits[:, 0]), np.exp(cond_logits[:, 0])
    pb, pc = pb / pb.sum(-1, keepdims=True), pc / pc.sum(-1, keepdims=True)
    b0, c0 = got["p0", "baseline"], got["p0", "zero"]
    assert (b0["answer_value"], b0["correct"], c0["answer_value"], c0["correct"]) == (12.0, True, 13.0, False)
    assert c0["flipped"] and not c0["fixed"]
    assert c0["kl_answer"] == pytest.approx(_np_kl(pb[0], pc[0]), rel=1e-4)
    assert c0["js_answer"] == pytest.approx(jensenshannon(pb[0], pc[0], base=math.e) ** 2, rel=1e-4)
    assert c0["entropy_answer"] == pytest.approx(scipy_entropy(pc[0]), rel=1e-4)
    assert (b0["kl_answer"], b0["js_answer"]) == (0.0, 0.0)
    assert b0["entropy_answer"] == pytest.approx(scipy_entropy(pb[0]), rel=1e-4)
    b1, c1 = got["p1", "baseline"], got["p1", "zero"]
    assert b1["answer_value"] is None and c1["answer_value"] is None  # none, and 9...9 (inf)
    assert c1["answer_text"] == "9" * 400 and not c1["correct"]
    for row in (b1, c1):
        assert (row["kl_answer"], row["js_answer"], row["entropy_answer"]) == (None, None, None)
        assert row["kl_first"] is not None
    assert rows.schema["answer_value"] == pl.Float64


def test_a_baseline_with_infinite_log_probs_measures_null():
    logp = torch.log_softmax(torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.0]]), -1)
    logp[1, 2] = float("inf")  # not a distribution: every measure NULL, never 0
    base = RowOutcome(
        tokens=[[1], [1]],
        texts=["1", "1"],
        eot_logp=logp,
        forced_logp=logp[:, None],
        logp_gold=torch.tensor([-1.0, -1.0]),
        attention=None,
        eot_row=torch.zeros(2, 3, 4),
        sites=None,
    )
    got = baseline_measures(None, base, [0, 0])
    assert got["kl_first"][0] == 0.0 and got["kl_answer"][0] == 0.0
    for key in ("kl_first", "kl_answer", "kl_max", "js_first", "js_answer", "disruption"):
        assert got[key][1] is None, key
