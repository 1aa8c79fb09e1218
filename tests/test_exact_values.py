"""Exact values (issue 14): every formula and every corruption against an independent computation.

Each expected number is computed here, in the test, with numpy / scipy / plain Python (or, end to end,
with a plain transformers forward that recomputes the whole CODI loop from scratch, no KV cache and no
engine code), on fixtures where the right and the wrong answer differ (each test asserts that they do).

Mutations of the code, each made one at a time on a copy of the tree; every test named failed on it
(and the whole module passes on the code as it is):

| mutation | caught by |
|---|---|
| `kl_answer` gathered at answer position 0 (the template token), not the number's token (in condition_measures, or number_index = 0 in assemble) | test_rows_by_hand, test_end_to_end_matches_a_plain_forward |
| KL direction swapped: KL(P_corr || P_base) | test_rows_by_hand, test_end_to_end_matches_a_plain_forward |
| JS without the 0.5 weights | test_js_divergence, test_rows_by_hand |
| JS with the mixture not halved | test_js_divergence, test_rows_by_hand |
| `gauss` scaled by sigma squared | test_gauss_replacement[absolute], test_gauss_replacement[rms], test_end_to_end_matches_a_plain_forward |
| `--noise-scale rms` scaled by the L2 norm, not the RMS | test_gauss_replacement[rms] |
| `shuffle` writes the target thought's own clean value (records j, ignores it) | test_shuffle_replacement, test_end_to_end_matches_a_plain_forward |
| `random` donor by a fixed rule (the next problem in the pool) | test_random_donor_is_a_seeded_draw_and_recorded |
| draw seed ignores thought and sigma (one noise vector for every condition) | test_noise_differs_per_condition_and_repeats_per_condition, test_random_donor_is_a_seeded_draw_and_recorded |
| draw seed follows the problem's position in its batch | test_replacements_do_not_depend_on_the_batch, test_end_to_end_matches_a_plain_forward |
| `mean` takes only the first pool member | test_mean_replacement_excludes_the_target |
| `mean` includes the target problem itself (decision 1) | test_mean_replacement_excludes_the_target |
| `flipped` ignores the baseline (flipped = not correct) | test_rows_by_hand, test_end_to_end_matches_a_plain_forward |
| `logp_gold` counts only the first gold token (sequence_log_prob) | test_sequence_log_prob, test_end_to_end_matches_a_plain_forward |
| gold answer without its EOS, a prefix probability (decision 2) | test_gold_tokens_end_with_eos, test_end_to_end_matches_a_plain_forward |
| disruption at layer 0 instead of the last layer (loop.py and staged.py, or staged.py alone) | test_end_to_end_matches_a_plain_forward |
| disruption as a per-head L2 (averaged) instead of the L2 of head-averaged rows | test_disruption, test_rows_by_hand, test_end_to_end_matches_a_plain_forward |
| `kl_max` over padded positions (past the baseline answer's length) | test_rows_by_hand |

(On the bundled model JS at EOT is ~0, since the answer's first word is nearly certain, so the JS and
`kl_max` padding mutations show in the hand-made rows, not end to end.)

Formulas pinned (each against numpy / scipy / plain Python): KL in both directions (distinguished), JS,
entropy, log p(gold) over every gold token and EOS, disruption, Wilson interval (SQL macros), within-
problem r, difficulty strata boundaries (Python and SQL), hub normalization and the head composite (views,
recomputed from the raw attention rows); the replacement value of every method (zero, clean, gauss under
both noise scales, random with its donor drawn and recorded, shuffle writing Tj's value, mean over the
other pool members); seeds (different thoughts / sigmas / layers / problems / run seeds get different
noise; a condition gets the same noise and donors whatever the batch it runs in, so also on resume).
"""  # noqa: E501 (the markdown table rows above cannot be wrapped)

from __future__ import annotations

import hashlib
import itertools
import math
import re
from types import SimpleNamespace

import duckdb
import numpy as np
import polars as pl
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import binomtest, pearsonr
from scipy.stats import entropy as scipy_entropy

from engine.interventions.chunk import build_plan, run_chunk
from engine.interventions.conditions import Condition, build_conditions, draw_seed, gaussian_noise
from engine.interventions.loop import RowOutcome, sequence_log_prob
from engine.interventions.measures import attention_disruption, entropy, js_divergence, kl_divergence
from engine.interventions.methods import replacement
from engine.interventions.options import EngineOptions
from engine.interventions.rows import assemble
from engine.model.answer_tokens import gold_tokens
from engine.model.positions import N_THOUGHTS
from warehouse.vocab import stratum_of


# --- independent helpers (numpy only) -----------------------------------------------------------------
def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_kl(p: np.ndarray, q: np.ndarray) -> float:
    """sum_v p log(p / q) in nats (terms with p = 0 are 0)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    mask = p > 0
    return float((p[mask] * (np.log(p[mask]) - np.log(q[mask]))).sum())


def np_js(p: np.ndarray, q: np.ndarray) -> float:
    return float(jensenshannon(p, q, base=math.e) ** 2)  # scipy returns the distance, sqrt(JS)


def np_disruption(base_row: np.ndarray, cond_row: np.ndarray) -> float:
    """L2 distance of the head-averaged attention rows [heads, keys]."""
    return float(
        np.linalg.norm(np.asarray(base_row, np.float64).mean(0) - np.asarray(cond_row, np.float64).mean(0))
    )


def differ(a: float, b: float, by: float = 1e-3) -> bool:
    return abs(a - b) > by


# --- measures on small tensors ------------------------------------------------------------------------
P = np.array([0.70, 0.20, 0.08, 0.02])
Q = np.array([0.25, 0.25, 0.25, 0.25])


def test_kl_direction_and_value():
    logp, logq = torch.tensor(np.log(P)), torch.tensor(np.log(Q))
    forward, backward = np_kl(P, Q), np_kl(Q, P)
    assert differ(forward, backward, 0.1)  # the two directions are far apart here
    assert kl_divergence(logp, logq).item() == pytest.approx(forward, rel=1e-9)
    assert kl_divergence(logq, logp).item() == pytest.approx(backward, rel=1e-9)
    # a zero-probability token adds nothing; a batch [2, V]; a distribution against itself
    with_zero = np.array([0.7, 0.2, 0.1, 0.0])
    got = kl_divergence(torch.tensor(with_zero).log(), logq).item()
    assert got == pytest.approx(np_kl(with_zero, Q), rel=1e-9)
    batch = kl_divergence(torch.stack([logp, logq]), torch.stack([logq, logq]))
    assert batch.tolist() == pytest.approx([forward, 0.0], abs=1e-12)


def test_js_divergence():
    rng = np.random.default_rng(1)
    for _ in range(5):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        got = js_divergence(torch.tensor(np.log(p)), torch.tensor(np.log(q))).item()
        m = (p + q) / 2
        assert got == pytest.approx(np_js(p, q), rel=1e-6)
        assert got == pytest.approx(0.5 * np_kl(p, m) + 0.5 * np_kl(q, m), rel=1e-6)
    # disjoint supports: JS = ln 2 exactly (without the 0.5 weights 2 ln 2; an unhalved mixture gives 0)
    a, b = torch.tensor([0.0, -math.inf]), torch.tensor([-math.inf, 0.0])
    assert js_divergence(a, b).item() == pytest.approx(math.log(2), abs=1e-6)


def test_entropy():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(9), size=3)
    got = entropy(torch.tensor(np.log(p))).numpy()
    assert got == pytest.approx(scipy_entropy(p, axis=-1), rel=1e-9)
    with_zero = np.array([0.7, 0.2, 0.1, 0.0])
    assert entropy(torch.tensor(with_zero).log()).item() == pytest.approx(scipy_entropy(with_zero), rel=1e-9)


def test_disruption():
    base = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])  # heads x keys
    cond = np.array([[0.1, 0.2, 0.7], [0.7, 0.2, 0.1]])  # each head changed, the head mean not at all
    other = np.array([[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    assert np_disruption(base, cond) == 0.0
    per_head = np.linalg.norm(base - other, axis=-1).mean()
    assert differ(np_disruption(base, other), per_head)
    got = attention_disruption(torch.tensor(np.stack([base, base])), torch.tensor(np.stack([cond, other])))
    assert got.tolist() == pytest.approx([0.0, np_disruption(base, other)], abs=1e-6)


def test_sequence_log_prob():
    """log p of EVERY token (EOS included); only the pad id is left out, and EOS is not the pad id."""
    pad, eos, vocab = 9, 0, 10
    logp = np_log_softmax(np.random.default_rng(3).normal(size=(2, 4, vocab)) * 2)
    tokens = [[4, 2, 7, eos], [5, eos, pad, pad]]
    want = [sum(logp[r, t, tok] for t, tok in enumerate(row) if tok != pad) for r, row in enumerate(tokens)]
    got = sequence_log_prob(torch.tensor(logp), torch.tensor(tokens), pad).tolist()
    assert got == pytest.approx(want, abs=1e-9)
    assert differ(want[0], logp[0, 0, 4]) and differ(want[0], want[0] - logp[0, 3, eos])


# --- result rows from hand-made outcomes ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from engine.model.checkpoints import load_model

    return load_model("gpt2-tiny")


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


def first_digit_index(tokenizer, tokens: list[int]) -> int:
    """Where the answer number starts: the first token whose text holds a digit (the template has none)."""
    return next(i for i, t in enumerate(tokens) if any(c.isdigit() for c in tokenizer.decode([t])))


def test_rows_by_hand(tiny):
    """condition_measures + assemble on hand-made outcomes: every measure, flipped and fixed."""
    tok = tiny.tokenizer
    eos = tok.eos_token_id

    def enc(text):
        return tok(" " + text, add_special_tokens=False)["input_ids"] + [eos]

    problems = [
        SimpleNamespace(problem_id="p0", gold=7.0, n_steps=2),
        SimpleNamespace(problem_id="p1", gold=5.0, n_steps=3),
    ]
    base_texts = ["The answer is: 7", "The answer is: 31"]  # p0 right, p1 wrong
    cond_texts = ["The answer is: 7", "The answer is: 8", "The answer is: 31", "The answer is: 5"]
    base_tokens, cond_tokens = [enc(t) for t in base_texts], [enc(t) for t in cond_texts]
    lengths = [len(t) for t in base_tokens]
    assert lengths[0] < lengths[1]
    width, vocab, heads, keys = lengths[1], 11, 3, 5
    rng = np.random.default_rng(4)
    base_logits = rng.normal(size=(2, width, vocab)) * 2
    cond_logits = rng.normal(size=(4, width, vocab)) * 2
    cond_logits[:2, lengths[0] :] = 0.0  # p0's rows past its answer (padding): a distribution far away
    cond_logits[:2, lengths[0] :, 3] = 40.0
    base_row = rng.dirichlet(np.ones(keys), size=(2, heads))
    cond_row = rng.dirichlet(np.ones(keys), size=(4, heads))
    base = _outcome(base_tokens, base_texts, base_logits, base_row, [-1.5, -6.0])
    out = _outcome(cond_tokens, cond_texts, cond_logits, cond_row, [-2.0, -3.0, -4.0, -5.0])
    corrupt = [Condition(1, "zero", 1, 0), Condition(2, "zero", 1, 3)]
    opts = EngineOptions((1,), (Condition(0, "baseline"), *corrupt), attention="none")
    results = assemble(tiny, problems, opts, base, out, corrupt, [(None, None)] * 4).results

    pb, pc = np.exp(np_log_softmax(base_logits)), np.exp(np_log_softmax(cond_logits))
    assert results.height == 6
    rows = results.filter(pl.col("method") != "baseline").sort("problem_id", "condition_id").to_dicts()
    correct = [True, False, False, True]
    for r, row in enumerate(rows):
        p = r // 2
        idx = first_digit_index(tok, base_tokens[p])
        kl = [np_kl(pb[p, t], pc[r, t]) for t in range(width)]
        kl_swapped = [np_kl(pc[r, t], pb[p, t]) for t in range(width)]
        want = {
            "kl_first": kl[0],
            "kl_answer": kl[idx],
            "kl_max": max(kl[: lengths[p]]),
            "js_first": np_js(pb[p, 0], pc[r, 0]),
            "entropy_first": scipy_entropy(pc[r, 0]),
            "logp_gold": [-2.0, -3.0, -4.0, -5.0][r],
            "disruption": np_disruption(base_row[p], cond_row[r]),
        }
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (r, key)
        # the fixture tells the right answer from the wrong ones
        assert idx > 0 and differ(kl[idx], kl[0]) and differ(kl[0], kl_swapped[0])
        assert differ(want["disruption"], np.linalg.norm(base_row[p] - cond_row[r], axis=-1).mean())
        m = (pb[p, 0] + pc[r, 0]) / 2
        assert differ(want["js_first"], np_kl(pb[p, 0], m) + np_kl(pc[r, 0], m))
        if p == 0:
            assert max(kl) > want["kl_max"] + 1  # the padded positions would win
        assert (row["correct"], row["flipped"], row["fixed"]) == (correct[r], r == 1, r == 3), r
    baseline = results.filter(pl.col("method") == "baseline").sort("problem_id").to_dicts()
    assert [(b["correct"], b["flipped"], b["fixed"]) for b in baseline] == [
        (True, False, False),
        (False, False, False),
    ]
    assert baseline[0]["entropy_first"] == pytest.approx(scipy_entropy(pb[0, 0]), rel=1e-5)
    assert [b["logp_gold"] for b in baseline] == pytest.approx([-1.5, -6.0])


# --- replacement values ---------------------------------------------------------------------------------
D = 4096  # large enough that the noise's sample moments pin its scale
LAYERS = (2, 4)


def sites_of(seed: int, d: int = D) -> torch.Tensor:
    """[layers, 6, d] clean values, not unit-scale (so sigma != sigma^2 and RMS != 1 != L2)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(LAYERS), N_THOUGHTS, d, generator=g) * 3 + 1


def opts_of(seed=7, noise_scale="absolute") -> EngineOptions:
    return EngineOptions(LAYERS, (), seed=seed, noise_scale=noise_scale)


def test_zero_and_clean_replacement():
    sites = sites_of(0)
    for li, k in itertools.product(range(2), range(N_THOUGHTS)):
        zero = replacement(Condition(1, "zero", LAYERS[li], k), "p", li, sites, {}, opts_of())
        clean = replacement(Condition(2, "clean", LAYERS[li], k), "p", li, sites, {}, opts_of())
        assert torch.equal(zero[0], torch.zeros(D)) and zero[1:] == (None, None)
        assert np.array_equal(clean[0].numpy(), sites[li, k].numpy()) and clean[1:] == (None, None)


@pytest.mark.parametrize("noise_scale", ["absolute", "rms"])
def test_gauss_replacement(noise_scale):
    sites = sites_of(1)
    for sigma, li, k in itertools.product((0.5, 2.0), range(2), (0, 3)):
        cond = Condition(5, "gauss", LAYERS[li], k, sigma)
        value, donor, donor_thought = replacement(cond, "p", li, sites, {}, opts_of(noise_scale=noise_scale))
        h = sites[li, k].double().numpy()
        rms = math.sqrt(float(np.mean(h * h)))
        assert differ(rms, 1.0) and differ(rms, float(np.linalg.norm(h)))
        scale = sigma * (rms if noise_scale == "rms" else 1.0)
        e = (value.double().numpy() - h) / scale
        # the noise is standard normal: the scale is sigma (x RMS), not sigma^2 (x L2)
        assert abs(e.mean()) < 0.06 and abs(e.std() - 1) < 0.05, (sigma, e.std())
        # and it is the condition's own seeded draw
        want = gaussian_noise(draw_seed(7, "p", cond), D).double().numpy()
        np.testing.assert_allclose(e, want, atol=2e-5 * max(1.0, 1 / scale))
        assert (donor, donor_thought) == (None, None)


def recovered_noise(cond: Condition, problem_id: str, sites: torch.Tensor, seed: int = 7) -> np.ndarray:
    li = LAYERS.index(cond.layer)
    value = replacement(cond, problem_id, li, sites, {}, opts_of(seed))[0].double().numpy()
    return (value - sites[li, cond.thought].double().numpy()) / cond.sigma


def test_noise_differs_per_condition_and_repeats_per_condition():
    sites = sites_of(2, d=64)
    noises = {}
    for layer, k, sigma, pid, seed in itertools.product(
        LAYERS, range(N_THOUGHTS), (0.5, 1.0, 2.0), ("a", "b"), (0, 1)
    ):
        noises[layer, k, sigma, pid, seed] = recovered_noise(
            Condition(1, "gauss", layer, k, sigma), pid, sites, seed
        )
    keys = list(noises)
    for x, y in itertools.combinations(keys, 2):
        assert np.abs(noises[x] - noises[y]).max() > 0.1, (x, y)  # every condition has its own noise
    # the same condition: the same noise, whatever the clean values around it or the call order
    for key in keys[::7]:
        layer, k, sigma, pid, seed = key
        again = recovered_noise(Condition(99, "gauss", layer, k, sigma), pid, sites_of(3, d=64), seed)
        np.testing.assert_allclose(again, noises[key], atol=1e-4)
    # the documented seed: sha256 of (run seed, problem, layer, thought, method, sigma)
    cond = Condition(3, "gauss", 4, 2, 0.5)
    digest = hashlib.sha256(b"7|a|4|2|gauss|0.5").digest()
    assert draw_seed(7, "a", cond) == int.from_bytes(digest[:8], "little") >> 1


def test_shuffle_replacement():
    sites = sites_of(4, d=16)
    drawn = {k: set() for k in range(N_THOUGHTS)}
    for pid, li, k in itertools.product([f"p{i}" for i in range(40)], range(2), range(N_THOUGHTS)):
        value, donor, j = replacement(Condition(1, "shuffle", LAYERS[li], k), pid, li, sites, {}, opts_of())
        assert donor == pid and j != k and 0 <= j < N_THOUGHTS
        assert np.array_equal(value.numpy(), sites[li, j].numpy())  # Tj's clean value, of this layer
        assert not np.allclose(value.numpy(), sites[li, k].numpy())
        drawn[k].add(j)
    assert all(js == set(range(N_THOUGHTS)) - {k} for k, js in drawn.items())  # a draw, not a fixed rule


def pool_of(ids, d=16, seed=5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {pid: torch.randn(len(LAYERS), N_THOUGHTS, d, generator=g) for pid in ids}


def test_random_donor_is_a_seeded_draw_and_recorded():
    pool_ids = ["d0", "d1", "d2", "d3", "d4", "d5"]
    pool = pool_of(pool_ids)
    targets = [f"t{i:02d}" for i in range(20)] + pool_ids[:3]  # some targets are pool members
    sites = sites_of(6, d=16)
    counts = dict.fromkeys(pool_ids, 0)

    def donors(seed, pool_dict):
        out = {}
        for pid, li, k in itertools.product(targets, range(2), range(N_THOUGHTS)):
            cond = Condition(1, "random", LAYERS[li], k)
            value, donor, donor_thought = replacement(cond, pid, li, sites, pool_dict, opts_of(seed))
            assert donor in pool_ids and donor != pid and donor_thought == k
            assert np.array_equal(
                value.numpy(), pool_dict[donor][li, k].numpy()
            )  # the recorded donor's value
            out[pid, li, k] = donor
        return out

    first = donors(7, pool)
    for donor in first.values():
        counts[donor] += 1
    # not a fixed rule: one target gets different donors for different thoughts and layers ...
    for pid in targets:
        assert len({first[pid, li, k] for li in range(2) for k in range(N_THOUGHTS)}) > 1, pid
    # ... every pool member is drawn about as often (276 draws, ~46 each) ...
    assert min(counts.values()) > 20, counts
    # ... the draw follows the run seed, and not the pool's order
    assert donors(7, dict(reversed(list(pool.items())))) == first
    other = donors(8, pool)
    assert sum(first[key] != other[key] for key in first) > len(first) / 2


def test_mean_replacement_excludes_the_target():
    pool = pool_of(["a", "b", "c", "t"])
    sites = sites_of(7, d=16)
    for li, k in itertools.product(range(2), range(N_THOUGHTS)):
        cond = Condition(1, "mean", LAYERS[li], k)
        others = np.mean([pool[pid][li, k].double().numpy() for pid in ("a", "b", "c")], axis=0)
        everyone = np.mean([pool[pid][li, k].double().numpy() for pid in ("a", "b", "c", "t")], axis=0)
        assert differ(float(np.abs(others - everyone).max()), 0.0)
        value, donor, donor_thought = replacement(cond, "t", li, sites, pool, opts_of())
        np.testing.assert_allclose(value.double().numpy(), others, atol=1e-6)
        assert (donor, donor_thought) == (None, None)
        outsider = replacement(cond, "x", li, sites, pool, opts_of())[0]  # not in the pool: all four
        np.testing.assert_allclose(outsider.double().numpy(), everyone, atol=1e-6)
        assert not np.allclose(everyone, pool["a"][li, k].double().numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="other than t"):
        replacement(Condition(1, "mean", 2, 0), "t", 0, sites, {"t": pool["t"]}, opts_of())


def test_replacements_do_not_depend_on_the_batch():
    """build_plan for [p0, p1, p2] and for [p2] alone (a later batch, or a resume): p2's values are equal."""
    methods = ("zero", "gauss", "random", "shuffle", "clean", "mean")
    corrupt = build_conditions(list(LAYERS), methods, (0.5, 1.0))[1:]
    opts = EngineOptions(LAYERS, tuple(build_conditions(list(LAYERS), methods, (0.5, 1.0))), seed=3)
    pool = pool_of(["d0", "d1", "p2"])
    problems = [SimpleNamespace(problem_id=f"p{i}") for i in range(3)]
    sites = torch.stack([sites_of(10 + i, d=16) for i in range(3)])

    def values_of(plan, rows):
        out = {}
        for plan_rows, values in plan.entries.values():
            for row, value in zip(plan_rows.tolist(), values, strict=True):
                if row in rows:
                    out[rows[row]] = value
        return out

    n = len(corrupt)
    plan_all, donors_all = build_plan(problems, corrupt, sites, pool, opts)
    plan_one, donors_one = build_plan(problems[2:], corrupt, sites[2:], pool, opts)
    together = values_of(plan_all, {2 * n + c: c for c in range(n)})
    alone = values_of(plan_one, {c: c for c in range(n)})
    assert sorted(together) == sorted(alone) == list(range(n))
    for c in range(n):
        assert torch.equal(together[c], alone[c]), corrupt[c]
    assert donors_all[2 * n :] == donors_one


# --- end to end: the engine against a plain forward of the bundled model --------------------------------
class PlainCodi:
    """The CODI loop recomputed from scratch at every step (no KV cache, no engine code).

    A patch overwrites block `layer`'s output at the position of thought `thought` in every forward
    that contains that position: with no cache, that is what a patch during step k leaves behind.
    """

    def __init__(self, model, question: str, max_new_tokens: int):
        self.model, self.max_new = model, max_new_tokens
        self.codi, self.wte = model.codi, model.codi.transformer.wte
        self.ids = model.tokenizer(question, add_special_tokens=False)["input_ids"] + [model.bot_id]
        self.vocab = model.base_vocab_size

    def embed(self, ids) -> torch.Tensor:
        with torch.no_grad():
            return self.wte(torch.tensor([ids], dtype=torch.long))

    def forward(self, embeds, patch=None, record=(), attentions=False):
        handles, recorded = [], {}
        if patch is not None:
            layer, position, value = patch

            def overwrite(_m, _a, out):
                hidden = out[0] if isinstance(out, tuple) else out
                if hidden.shape[1] <= position:
                    return out
                hidden = hidden.clone()
                hidden[0, position] = value
                return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

            handles.append(self.codi.transformer.h[layer].register_forward_hook(overwrite))
        for layer in record:

            def keep(_m, _a, out, layer=layer):
                recorded[layer] = (out[0] if isinstance(out, tuple) else out)[0].clone()

            handles.append(self.codi.transformer.h[layer].register_forward_hook(keep))
        try:
            with torch.no_grad():
                out = self.codi(inputs_embeds=embeds, output_hidden_states=True, output_attentions=attentions)
        finally:
            for h in handles:
                h.remove()
        return out, recorded

    def run(self, answer: list[int] | None, gold: list[int], patch=None, record=()):
        """Thoughts, EOT, greedy answer; log-probs along `answer` (None: the greedy one) and along `gold`;
        the clean block outputs at T0..T5 of the layers in `record`."""
        seq = self.embed(self.ids)
        patch = None if patch is None else (patch[0], len(self.ids) + patch[1], patch[2])
        out, _ = self.forward(seq, patch)
        for _ in range(N_THOUGHTS):
            seq = torch.cat([seq, self.model.prj(out.hidden_states[-1][:, -1:]).detach()], 1)
            out, _ = self.forward(seq, patch)
        seq = torch.cat([seq, self.embed([self.model.eot_id])], 1)
        eot = seq.shape[1] - 1
        greedy = []
        for _ in range(self.max_new):
            out, _ = self.forward(seq, patch)
            nxt = int(out.logits[0, -1, : self.vocab].argmax())
            greedy.append(nxt)
            if nxt == self.model.tokenizer.eos_token_id:
                break
            seq = torch.cat([seq, self.embed([nxt])], 1)
        result = {"tokens": greedy}
        for name, toks in (("forced", greedy if answer is None else answer), ("gold", gold)):
            full = torch.cat([seq[:, : eot + 1], self.embed(toks[:-1])], 1)
            forced = name == "forced"
            out, recorded = self.forward(full, patch, record if forced else (), attentions=forced)
            result[name] = np_log_softmax(out.logits[0, eot : eot + len(toks), : self.vocab].double().numpy())
            if forced:
                result["eot_row"] = out.attentions[-1][0, :, eot, :].double().numpy()
                result["sites"] = {
                    layer: h[len(self.ids) : len(self.ids) + N_THOUGHTS] for layer, h in recorded.items()
                }
        return result


ANSWER = re.compile(r"The answer is:\s*(-?\d+)")


def parsed(tokenizer, tokens) -> float | None:
    match = ANSWER.search(tokenizer.decode([t for t in tokens if t != tokenizer.eos_token_id]))
    return float(match.group(1)) if match else None


E2E_LAYERS = (1, 4)
# (method, layer, thought, sigma): every method whose value comes from the problem itself, both layers,
# early and late thoughts (a plain recompute costs ~20 forwards a row on 2 CPU cores, so a selection)
E2E_CONDITIONS = (
    ("zero", 1, 0, None),
    ("zero", 4, 3, None),
    ("gauss", 1, 2, 0.5),
    ("gauss", 4, 5, 2.0),
    ("shuffle", 1, 4, None),
    ("shuffle", 4, 1, None),
)


@pytest.fixture(scope="module")
def e2e(tiny):
    from ingest.datasets import synthetic_problems

    problems = synthetic_problems(6, seed=2)
    chosen = [problems[0], problems[4]]  # gold 3 answered 3 (short); gold 44 answered 40 (longer, wrong)
    conditions = (Condition(0, "baseline"),) + tuple(
        Condition(i, m, layer, k, sigma) for i, (m, layer, k, sigma) in enumerate(E2E_CONDITIONS, 1)
    )
    opts = EngineOptions(E2E_LAYERS, conditions, seed=11, attention="none", max_new_tokens=10)
    return chosen, opts, run_chunk(tiny, chosen, opts).results


def test_gold_tokens_end_with_eos(tiny):
    tok = tiny.tokenizer
    base = tok(" The answer is: 420", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    gold = gold_tokens(tiny, base, 42.0)
    assert gold[-1] == tok.eos_token_id != tiny.pad_id
    assert tok.decode(gold[:-1]) == " The answer is: 42"
    assert base[: len(gold) - 1] == gold[:-1]  # without EOS, "42" would be scored as a prefix of "420"


def test_end_to_end_matches_a_plain_forward(tiny, e2e):
    """Every measure of every row (zero, gauss, shuffle at two layers, two problems) from a plain forward."""
    problems, opts, results = e2e
    tok = tiny.tokenizer
    eos = tok.eos_token_id
    checked, answer_lengths = 0, []
    for problem in problems:
        rows = results.filter(pl.col("problem_id") == problem.problem_id).sort("condition_id").to_dicts()
        plain = PlainCodi(tiny, problem.question, opts.max_new_tokens)
        # the baseline: its own greedy answer, and the gold answer in its format, EOS included
        probe = plain.run(None, [eos])
        base_tokens = probe["tokens"]
        answer_lengths.append(len(base_tokens))
        idx = first_digit_index(tok, base_tokens)
        assert idx > 0 and base_tokens[-1] == eos
        gold = base_tokens[:idx] + tok(str(int(problem.gold)), add_special_tokens=False)["input_ids"] + [eos]
        base = plain.run(base_tokens, gold, record=E2E_LAYERS)
        pb, gb, sites = np.exp(base["forced"]), base["gold"], base["sites"]
        base_correct = parsed(tok, base_tokens) == problem.gold
        row = rows[0]
        assert row["method"] == "baseline" and row["answer_text"] == tok.decode(base_tokens[:-1]).strip()
        want_logp = float(sum(gb[t, g] for t, g in enumerate(gold)))
        assert row["logp_gold"] == pytest.approx(want_logp, abs=2e-4)
        assert differ(want_logp, gb[0, gold[0]])
        assert row["entropy_first"] == pytest.approx(scipy_entropy(pb[0]), abs=2e-4)
        assert row["correct"] == base_correct
        for row in rows[1:]:
            layer, k = row["layer"], row["thought"]
            h = sites[layer][k]
            if row["method"] == "zero":
                value = torch.zeros_like(h)
            elif row["method"] == "gauss":
                cond = Condition(row["condition_id"], "gauss", layer, k, row["sigma"])
                value = h + row["sigma"] * gaussian_noise(
                    draw_seed(opts.seed, problem.problem_id, cond), h.shape[0]
                )
            else:
                assert row["donor_thought"] != k and row["donor_problem_id"] == problem.problem_id
                value = sites[layer][row["donor_thought"]]
            run = plain.run(base_tokens, gold, patch=(layer, k, value))
            pc = np.exp(run["forced"])
            kl = [np_kl(pb[t], pc[t]) for t in range(len(base_tokens))]
            correct = parsed(tok, run["tokens"]) == problem.gold
            want = {
                "kl_first": kl[0],
                "kl_answer": kl[idx],
                "kl_max": max(kl),
                "js_first": np_js(pb[0], pc[0]),
                "entropy_first": scipy_entropy(pc[0]),
                "logp_gold": float(sum(run["gold"][t, g] for t, g in enumerate(gold))),
                "disruption": np_disruption(base["eot_row"], run["eot_row"]),
            }
            where = (problem.problem_id, row["method"], layer, k)
            for key, value in want.items():
                assert row[key] == pytest.approx(value, rel=2e-3, abs=2e-4), (where, key, row[key], value)
            assert row["answer_text"] == tok.decode([t for t in run["tokens"] if t != eos]).strip(), where
            assert (row["correct"], row["flipped"], row["fixed"]) == (
                correct,
                base_correct and not correct,
                (not base_correct) and correct,
            ), where
            checked += 1
    assert checked == len(problems) * len(E2E_CONDITIONS)
    # the fixture tells right from wrong: answers of two lengths, a wrong baseline, answers that change
    assert answer_lengths[0] < answer_lengths[1]
    assert results.filter(pl.col("method") == "baseline")["correct"].to_list() == [True, False]
    rows = results.filter(pl.col("method") != "baseline")
    assert rows["correct"].sum() > 0 and (~rows["correct"]).sum() > 0


# --- statistics and views -----------------------------------------------------------------------------
Z = 1.959963984540054


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@pytest.fixture(scope="module")
def macros():
    from warehouse.views import MACROS, QUERIES_DIR

    con = duckdb.connect()
    con.execute((QUERIES_DIR / MACROS).read_text())
    return con


def test_wilson_interval(macros):
    for n in range(1, 16):
        for k in range(n + 1):
            low, high = macros.execute("SELECT wilson_low(?, ?), wilson_high(?, ?)", [k, n, k, n]).fetchone()
            want = wilson_by_hand(k, n)
            assert (low, high) == pytest.approx(want, abs=1e-12), (k, n)
            ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
            assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    wald = 0.3 - Z * math.sqrt(0.3 * 0.7 / 10)
    assert differ(wilson_by_hand(3, 10)[0], wald)
    assert macros.execute("SELECT wilson_low(0, 0), wilson_high(0, 0)").fetchone() == (None, None)


def test_difficulty_strata_boundaries(macros):
    want = {0: "<=2", 1: "<=2", 2: "<=2", 3: "3", 4: "4", 5: "5+", 6: "5+", 7: "5+", 12: "5+"}
    for n, stratum in want.items():
        assert stratum_of(n) == stratum, n
        assert macros.execute("SELECT stratum(?)", [n]).fetchone()[0] == stratum, n
    assert macros.execute("SELECT stratum(NULL)").fetchone()[0] is None


def test_within_problem_r():
    """Problems that attend more also matter more overall (pooled r > 0), but within a problem the
    thought attended most matters least: the within-problem r is negative."""
    from analysis.resampling import within_permutation

    a = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.95]])
    b = np.array([[0.3, 0.2, 0.1], [0.6, 0.5, 0.45], [0.9, 0.85, 0.7]])
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    within = pearsonr(ac.ravel(), bc.ravel()).statistic
    pooled = pearsonr(a.ravel(), b.ravel()).statistic
    assert pooled > 0.8 and within < -0.8
    r, _, n = within_permutation(a, b, 50, np.random.default_rng(0))
    assert r == pytest.approx(within, rel=1e-12) and n == 3


@pytest.fixture(scope="module")
def views_db(tmp_path_factory):
    import views_data as vd

    return vd.build(tmp_path_factory.mktemp("exact") / "w")


def test_hub_normalization_and_head_composite(views_db):
    """hub_scores and head_metrics recomputed from the raw baseline attention rows with numpy."""
    import views_data as vd

    raw = vd.rows(
        views_db,
        "SELECT layer, head, dst, src, weight FROM attention WHERE condition_id = 0 "
        "AND problem_id IN (SELECT problem_id FROM results WHERE condition_id = 0)",
    )
    # run A is the only run with attention in this warehouse
    heads = sorted({(r["layer"], r["head"]) for r in raw})
    m = np.zeros((len(heads), 7, 9))  # mean over problems of A[dst -> src], src code + 2 as the column
    count = np.zeros_like(m)
    for r in raw:
        i = heads.index((r["layer"], r["head"]))
        m[i, r["dst"], r["src"] + 2] += r["weight"]
        count[i, r["dst"], r["src"] + 2] += 1
    m = m / np.maximum(count, 1)
    thought = m[:, :6, 2:8]  # [head, query Ti, key Tj]
    norm = np.array([[thought[h, j + 1 :, j].mean() for j in range(5)] for h in range(len(heads))])
    raw_sum = thought.sum(1)  # the research column sum (self included)
    hub = {
        r["position"]: r for r in vd.rows(views_db, "SELECT * FROM hub_scores WHERE run_id = ?", [vd.RUN_A])
    }
    for j in range(5):
        assert hub[j]["incoming_norm"] == pytest.approx(norm[:, j].mean(), abs=1e-6)
        assert hub[j]["incoming_raw"] == pytest.approx(raw_sum[:, j].mean(), abs=1e-6)
    assert hub[5]["incoming_norm"] is None
    mean_norm = norm.mean(0)
    assert hub[0]["hub_ratio"] == pytest.approx(mean_norm.max() / mean_norm.mean(), abs=1e-6)
    assert int(np.argmax(mean_norm)) != int(np.argmax(raw_sum.mean(0)))  # normalizing changes the hub

    flow = np.array([np.mean([thought[h, i, i - 1] for i in range(1, 6)]) for h in range(len(heads))])
    skip = thought[:, 5, :3].mean(1)
    hubs = norm.var(1)  # population variance over T0..T4

    def scaled(x):
        return (x - x.min()) / (x.max() - x.min())

    composite = 0.4 * scaled(flow) + 0.4 * scaled(hubs) + 0.2 * scaled(skip)
    unscaled = 0.4 * flow + 0.4 * hubs + 0.2 * skip
    assert np.abs(composite - unscaled).min() > 0.02  # the min-max scaling matters on this fixture
    got = {
        (r["layer"], r["head"]): r
        for r in vd.rows(views_db, "SELECT * FROM head_metrics WHERE run_id = ?", [vd.RUN_A])
    }
    for i, key in enumerate(heads):
        row = got[key]
        assert (row["flow"], row["hub"], row["skip"]) == pytest.approx((flow[i], hubs[i], skip[i]), abs=1e-6)
        assert row["composite"] == pytest.approx(composite[i], abs=1e-6)
        assert row["rank"] == 1 + int((composite > composite[i] + 1e-9).sum())


def test_a_baseline_with_non_finite_logits_measures_null_not_zero(tiny):
    """A broken baseline (NaN logits: an overflowing checkpoint or dtype) stores NULL for every measure of
    its own row and of its conditions, never the 0.0 a healthy baseline has against itself."""
    tok = tiny.tokenizer
    tokens = [tok(" The answer is: 7", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]] * 2
    width, vocab = len(tokens[0]), 11
    rng = np.random.default_rng(5)
    base_logits = rng.normal(size=(2, width, vocab))
    base_logits[1] = np.nan  # problem p1's baseline is broken
    problems = [SimpleNamespace(problem_id=f"p{i}", gold=7.0, n_steps=2) for i in range(2)]
    base = _outcome(
        tokens,
        ["The answer is: 7"] * 2,
        base_logits,
        rng.dirichlet(np.ones(5), size=(2, 3)),
        [-1.0, float("nan")],
    )
    out = _outcome(
        tokens,
        ["The answer is: 7"] * 2,
        rng.normal(size=(2, width, vocab)),
        rng.dirichlet(np.ones(5), size=(2, 3)),
        [-1.0, -1.0],
    )
    corrupt = [Condition(1, "zero", 1, 0)]
    opts = EngineOptions((1,), (Condition(0, "baseline"), *corrupt), attention="none")
    results = assemble(tiny, problems, opts, base, out, corrupt, [(None, None)] * 2).results
    measures = [
        "kl_first",
        "kl_answer",
        "kl_max",
        "js_first",
        "js_answer",
        "entropy_first",
        "entropy_answer",
        "logp_gold",
    ]  # a condition row's own entropy and log p(gold) do not depend on the baseline
    healthy = results.filter((pl.col("problem_id") == "p0") & (pl.col("method") == "baseline"))
    assert healthy.select("kl_first", "kl_answer", "js_answer").row(0) == (0.0, 0.0, 0.0)
    for row in results.filter(pl.col("problem_id") == "p1").iter_rows(named=True):
        own = ("entropy_first", "entropy_answer", "logp_gold")
        nulls = [m for m in measures if row[m] is not None and (row["method"] == "baseline" or m not in own)]
        assert nulls == [], (row["method"], nulls)
