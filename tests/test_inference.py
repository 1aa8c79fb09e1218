"""Inference `stats` adds (issue 17): multiple-comparison adjustments, Kendall's W and Spearman pairs of
the methods' thought profiles (RQ2), strata bootstrap intervals and the strata test (RQ3), checked against
statsmodels, scipy and direct computations."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from analysis.frames import problem_matrix
from analysis.inference import (
    adjust,
    adjusted,
    agreement,
    kendall_w,
    spearman_exact,
    strata_heterogeneity,
    strata_inference,
    w_permutation,
)
from analysis.resampling import bootstrap_r, interval, problem_sums, resample_counts

RAW = [0.001, 0.04, 0.03, 0.2, None, 0.012, 0.5, float("nan"), 0.049]


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjusted_p_values_equal_statsmodels_over_the_non_null_family(method):
    got = adjusted(RAW, method)
    family = [p for p in RAW if p is not None and np.isfinite(p)]
    want = iter(multipletests(family, method=method)[1])
    for raw, value in zip(RAW, got, strict=True):
        if raw is None or not np.isfinite(raw):
            assert value is None
        else:
            assert value == pytest.approx(next(want), rel=1e-12)
    assert not np.allclose([v for v in got if v is not None], family)  # an adjustment happened
    frame, size = adjust(pl.DataFrame({"p": RAW}), "p", method, "adj")
    assert size == len(family) and frame["adj"].to_list() == got
    if method == "fdr_bh":
        assert [v for v in got if v is not None] == pytest.approx(sps.false_discovery_control(family))


def w_by_formula(profiles: np.ndarray) -> float:
    """Kendall's W written out: rank sums, S, tie correction per rater."""
    m, n = profiles.shape
    ranks = np.array([sps.rankdata(row) for row in profiles])
    totals = ranks.sum(0)
    s = sum((t - m * (n + 1) / 2) ** 2 for t in totals)
    ties = 0.0
    for row in profiles:
        for value in set(row.tolist()):
            t = int((row == value).sum())
            ties += t**3 - t
    return 12 * s / (m**2 * (n**3 - n) - m * ties)


def test_kendall_w_with_ties_equals_the_formula_and_friedman():
    profiles = np.array(
        [
            [0.5, 0.3, 0.3, 0.1, 0.0, 0.0],
            [0.4, 0.4, 0.2, 0.0, 0.1, 0.0],
            [0.2, 0.5, 0.1, 0.1, 0.1, 0.0],
            [0.6, 0.1, 0.3, 0.2, 0.0, 0.05],
        ]
    )
    w = kendall_w(profiles)
    assert w == pytest.approx(w_by_formula(profiles), rel=1e-12)
    m, n = profiles.shape  # Friedman's chi2 (thoughts as treatments, methods as blocks) = m (n - 1) W
    chi2 = sps.friedmanchisquare(*profiles.T).statistic
    assert w == pytest.approx(chi2 / (m * (n - 1)), rel=1e-12)
    assert kendall_w(profiles[:, ::-1]) == pytest.approx(w)  # relabelling items changes nothing
    no_ties = np.random.default_rng(0).random((5, 6))  # without ties: mean pairwise rho = (m W - 1)/(m - 1)
    rhos = [sps.spearmanr(a, b).statistic for a, b in itertools.combinations(no_ties, 2)]
    assert np.mean(rhos) == pytest.approx((5 * kendall_w(no_ties) - 1) / 4, rel=1e-12)


def test_w_permutation_p_small_when_methods_concur_uniform_under_no_effect():
    concordant = np.tile([0.6, 0.5, 0.4, 0.3, 0.2, 0.1], (4, 1)) * np.array([[1.0], [0.5], [0.8], [0.3]])
    w, p = w_permutation(concordant, 500, seed=0)
    assert w == pytest.approx(1.0) and p == pytest.approx(1 / 501)
    rng = np.random.default_rng(1)
    ps = [w_permutation(rng.random((4, 6)), 200, seed=i)[1] for i in range(200)]
    assert 0.02 <= np.mean(np.array(ps) < 0.05) <= 0.09
    assert 0.4 <= np.mean(ps) <= 0.6


def test_spearman_pairs_equal_scipy_with_an_exact_permutation_p():
    rng = np.random.default_rng(2)
    for _ in range(5):
        x, y = rng.random(6), rng.random(6)
        y[2] = y[4]  # a tie
        rho, p = spearman_exact(x, y)
        assert rho == pytest.approx(sps.spearmanr(x, y).statistic, rel=1e-12)
        perms = [sps.spearmanr(x[list(o)], y).statistic for o in itertools.permutations(range(6))]
        greater = np.mean(np.array(perms) >= rho - 1e-12)
        less = np.mean(np.array(perms) <= rho + 1e-12)
        assert p == pytest.approx(min(1.0, 2 * min(greater, less)), rel=1e-9)  # all 720 orderings
    assert spearman_exact(np.arange(6.0), np.arange(6.0)) == pytest.approx((1.0, 2 / 720))


def profile_frame(profiles: dict[str, list[float]], patch_layer: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "patch_layer": patch_layer,
                "method": m,
                "thought": k,
                "thought_name": f"T{k}",
                "n": 10,
                "failure_rate": v,
            }
            for m, values in profiles.items()
            for k, v in enumerate(values)
        ]
    )


def test_agreement_frames_from_profiles_leave_out_constant_methods():
    profiles = {
        "zero": [0.5, 0.4, 0.3, 0.1, 0.0, 0.2],
        "gauss": [0.3, 0.35, 0.1, 0.0, 0.05, 0.1],
        "mean": [0.2, 0.1, 0.3, 0.0, 0.0, 0.1],
        "shuffle": [0.0] * 6,  # breaks nothing: ranks nothing
    }
    w_frame, pairs = agreement(profile_frame(profiles), 300, 0)
    row = w_frame.to_dicts()[0]
    kept = np.array([profiles[m] for m in ("zero", "gauss", "mean")])
    assert row["methods"] == "zero, gauss, mean" and row["left_out"] == "shuffle"
    assert row["w"] == pytest.approx(w_by_formula(kept), rel=1e-12) and row["thoughts"] == 6
    assert [(r["method_a"], r["method_b"]) for r in pairs.to_dicts()] == [
        ("zero", "gauss"),
        ("zero", "mean"),
        ("gauss", "mean"),
    ]
    for r in pairs.to_dicts():
        want = sps.spearmanr(profiles[r["method_a"]], profiles[r["method_b"]]).statistic
        assert r["rho"] == pytest.approx(want, rel=1e-12)
    assert row["mean_rho"] == pytest.approx(pairs["rho"].mean())


def strata_pairs(r_by_stratum: dict[str, float], problems: int, seed: int) -> pl.DataFrame:
    """int_attention_importance-shaped rows: per stratum, problems whose 6 (attention, importance) pairs
    correlate about r."""
    rng = np.random.default_rng(seed)
    out = []
    for stratum, r in r_by_stratum.items():
        for p in range(problems):
            a = rng.normal(size=6)
            b = r * a + np.sqrt(1 - r * r) * rng.normal(size=6)
            out += [
                {
                    "patch_layer": 1,
                    "layer": 0,
                    "stratum": stratum,
                    "problem_id": f"{stratum}-{p:03d}",
                    "thought": k,
                    "attention": float(a[k]),
                    "importance": float(b[k]),
                }
                for k in range(6)
            ]
    return pl.DataFrame(out)


def test_strata_intervals_match_a_direct_resampling_and_strata_come_in_order():
    pairs = strata_pairs({"5+": 0.5, "3": 0.2, "<=2": 0.8, "4": 0.0}, 12, seed=3)
    intervals, tests = strata_inference(pairs, 400, 200, seed=7)
    assert intervals["stratum"].to_list() == ["<=2", "3", "4", "5+"]  # never string order
    for row in intervals.to_dicts():
        part = pairs.filter(pl.col("stratum") == row["stratum"])
        a, b = problem_matrix(part, "attention"), problem_matrix(part, "importance")
        r = np.corrcoef(part["attention"], part["importance"])[0, 1]
        low, high = interval(bootstrap_r(a, b, resample_counts(12, 400, np.random.default_rng(7))))
        assert (row["r_low"], row["r_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["r_low"] <= r <= row["r_high"]
        manual = []  # the same draws, problem by problem
        rng = np.random.default_rng(7)
        counts = rng.multinomial(12, np.full(12, 1 / 12), size=400)
        for c in counts:
            idx = np.repeat(np.arange(12), c)
            manual.append(np.corrcoef(a[idx].ravel(), b[idx].ravel())[0, 1])
        assert np.percentile(manual, [2.5, 97.5]) == pytest.approx([low, high], rel=1e-9)
    assert tests.to_dicts()[0] | {"q": None, "p_perm": None} == {
        "patch_layer": 1,
        "layer": 0,
        "strata": 4,
        "problems": 48,
        "q": None,
        "p_perm": None,
    }


def test_strata_test_finds_a_planted_difference_and_not_a_missing_one():
    planted = strata_pairs({"<=2": 0.9, "3": 0.9, "4": -0.6, "5+": -0.6}, 15, seed=4)
    assert strata_inference(planted, 50, 400, seed=0)[1]["p_perm"].item() < 0.01
    null_ps = []
    for seed in range(40):
        same = strata_pairs({"<=2": 0.4, "3": 0.4, "4": 0.4, "5+": 0.4}, 10, seed=100 + seed)
        null_ps.append(strata_inference(same, 20, 200, seed=seed)[1]["p_perm"].item())
    assert np.mean(np.array(null_ps) < 0.05) <= 0.15 and np.median(null_ps) > 0.2


def test_strata_permutation_agrees_with_scipy_permutation_test():
    pairs = strata_pairs({"<=2": 0.7, "3": 0.3, "5+": 0.0}, 8, seed=5)
    strata = ["<=2", "3", "5+"]
    sums, labels = [], []
    for k, s in enumerate(strata):
        part = pairs.filter(pl.col("stratum") == s)
        sums.append(problem_sums(problem_matrix(part, "attention"), problem_matrix(part, "importance")))
        labels += [k] * 8
    sums_all, labels_arr = np.concatenate(sums), np.array(labels)
    q, p = strata_heterogeneity(sums_all, labels_arr, 4000, seed=0)

    def q_of(*groups, axis=-1):
        per = []
        for g in groups:
            g = np.moveaxis(g, axis, -1).astype(int)
            per.append(sums_all[g].sum(-2))
        n, sa, sb, saa, sbb, sab = np.moveaxis(np.stack(per, -2), -1, 0)
        r = (sab - sa * sb / n) / np.sqrt((saa - sa * sa / n) * (sbb - sb * sb / n))
        z, w = np.arctanh(r), n - 3
        z_bar = (w * z).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
        return (w * (z - z_bar) ** 2).sum(-1)

    groups = tuple(np.flatnonzero(labels_arr == k).astype(float) for k in range(3))
    want = sps.permutation_test(
        groups, q_of, vectorized=True, n_resamples=4000, alternative="greater", rng=np.random.default_rng(1)
    )
    assert q == pytest.approx(want.statistic, rel=1e-9)
    assert p == pytest.approx(want.pvalue, abs=0.03)  # two Monte Carlo estimates of one p
