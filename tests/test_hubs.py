"""Hubs and head types with uncertainty (analysis/hubs.py): the per-problem intermediates reproduce the
views, the bootstrap is a plain problem resampling, the permutation test finds a planted hub, keeps quiet
on a flat pattern and holds its level under the null; head types only where a head stands out."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pyarrow as pa
import pytest
import views_data as vd
from click.testing import CliRunner
from views_data import RUN_A, rows

from analysis import hubs
from analysis.frames import reading
from analysis.resampling import resample_counts
from analysis.stats import format_stats, run_stats
from cli import cli
from warehouse.store import open_warehouse

N_BOOT, N_PERM = 400, 400


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("hubs") / "w")


@pytest.fixture(scope="module")
def stats(db):
    with open_warehouse(db, read_only=True) as wh:
        return run_stats(wh.run(RUN_A), n_boot=N_BOOT, n_perm=N_PERM)


# --- a warehouse from thought-to-thought attention --------------------------------------------------------
def write_run(path, weights: np.ndarray, run_id: str = "syn") -> str:
    """A run whose baseline attention A[Ti -> Tj] (j <= i) is weights [problems, layers, heads, 6, 6];
    the rest of each query row goes to the question."""
    problems, layers, heads = weights.shape[:3]
    ids = [f"s{p:03d}-0000000000" for p in range(problems)]
    p, lay, h, d, s = np.meshgrid(
        np.arange(problems),
        np.arange(layers),
        np.arange(heads),
        np.arange(6),
        np.arange(-2, 6),
        indexing="ij",
    )
    visible = (s <= d).ravel()
    w = np.zeros(p.shape)
    thoughts = s >= 0
    w[thoughts] = weights[p[thoughts], lay[thoughts], h[thoughts], d[thoughts], s[thoughts]]
    tril = np.tril(np.ones((6, 6)), 0)
    to_question = 1 - (weights * tril).sum(-1)  # [problems, layers, heads, 6]
    question = s == -2
    w[question] = to_question[p[question], lay[question], h[question], d[question]]
    attention = pa.table(
        {
            "problem_id": np.array(ids)[p.ravel()[visible]],
            "condition_id": np.zeros(visible.sum(), dtype=np.int64),
            "layer": lay.ravel()[visible],
            "head": h.ravel()[visible],
            "dst": d.ravel()[visible],
            "src": s.ravel()[visible],
            "weight": w.ravel()[visible],
        }
    )
    problem_rows = [
        {"problem_id": i, "question": i, "gold_answer": 1.0, "n_steps": 2, "source": "syn", "source_id": i}
        for i in ids
    ]
    results = [
        {
            "problem_id": i,
            "condition_id": 0,
            "layer": None,
            "thought": None,
            "method": "baseline",
            "sigma": None,
            "correct": True,
            "flipped": False,
            "fixed": False,
            "kl_first": 0.0,
            "kl_answer": 0.0,
            "logp_gold": -1.0,
            "disruption": 0.0,
        }
        for i in ids
    ]
    store = open_warehouse(path, durable=False)
    run = store.begin_run({"syn": run_id}, run_id=run_id, model_name="syn", n_layers=layers, n_heads=heads)
    store.append_problems(run, problem_rows, results, attention)
    store.finish_run(run)
    return str(store.path)


def null_weights(rng, shape, mean=0.05, sigma=0.5) -> np.ndarray:
    """Every A[Ti -> Tj] (j < i) iid around one mean per problem: no thought favoured, but T_j's
    incoming_norm averages 5 - j weights, so the five values differ in spread."""
    problem = rng.lognormal(0, 0.3, size=shape[:1] + (1,) * (len(shape) - 1))
    return mean * problem * rng.lognormal(-sigma * sigma / 2, sigma, size=shape)


def per_thought(a: np.ndarray) -> np.ndarray:
    """[..., 5] incoming_norm of T0..T4 from weights [..., 6, 6]."""
    return np.stack([a[..., j + 1 :, j].mean(-1) for j in range(5)], -1)


def tables(db, run_id="syn", n_boot=N_BOOT, n_perm=N_PERM):
    with open_warehouse(db, read_only=True) as wh, reading(wh.run(run_id)) as con:
        return hubs.hub_table(con, run_id, n_boot, n_perm, 0), hubs.head_table(con, run_id, n_boot, 0)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(7)
    a = null_weights(rng, (30, 1, 2, 6, 6))
    a[..., 2] *= 1.5  # every later thought attends to T2 half as much again
    return write_run(tmp_path_factory.mktemp("planted") / "w", a), a


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    rng = np.random.default_rng(8)
    return write_run(tmp_path_factory.mktemp("flat") / "w", null_weights(rng, (30, 2, 4, 6, 6)))


# --- the per-problem intermediates reproduce the views ------------------------------------------------------
def test_per_problem_views_average_to_the_views(db):
    mean_incoming = rows(
        db,
        "SELECT layer, head, position, avg(incoming_raw) AS raw, avg(incoming_norm) AS norm, "
        "max(later_thoughts) AS later, count(*) AS problems FROM int_problem_incoming WHERE run_id = ? "
        "GROUP BY ALL",
        [RUN_A],
    )
    view = {
        (r["layer"], r["head"], r["position"]): r
        for r in rows(db, "SELECT * FROM int_head_incoming WHERE run_id = ?", [RUN_A])
    }
    assert len(mean_incoming) == len(view) == 4 * 6
    for r in mean_incoming:
        want = view[r["layer"], r["head"], r["position"]]
        assert r["problems"] == 4 and r["later"] == want["later_thoughts"]
        assert r["raw"] == pytest.approx(want["incoming_raw"], abs=1e-12)
        assert r["norm"] == (
            None if want["incoming_norm"] is None else pytest.approx(want["incoming_norm"], abs=1e-12)
        )
    hub = rows(
        db,
        "SELECT position, avg(incoming_norm) AS norm FROM (SELECT problem_id, position, avg(incoming_norm) "
        "AS incoming_norm FROM int_problem_incoming WHERE run_id = ? GROUP BY ALL) GROUP BY position",
        [RUN_A],
    )
    view_hub = {r["position"]: r for r in rows(db, "SELECT * FROM hub_scores WHERE run_id = ?", [RUN_A])}
    for r in hub:
        want = view_hub[r["position"]]["incoming_norm"]
        assert r["norm"] == (None if want is None else pytest.approx(want, abs=1e-12))
    scores = rows(
        db,
        "SELECT layer, head, avg(flow) AS flow, avg(skip) AS skip, avg(self_attn) AS self_attn, "
        "var_pop(flow) AS spread FROM int_problem_head_scores WHERE run_id = ? GROUP BY ALL",
        [RUN_A],
    )
    heads = {
        (r["layer"], r["head"]): r for r in rows(db, "SELECT * FROM head_metrics WHERE run_id = ?", [RUN_A])
    }
    assert len(scores) == len(heads) == 4
    for r in scores:
        want = heads[r["layer"], r["head"]]
        for column in ("flow", "skip", "self_attn"):
            assert r[column] == pytest.approx(want[column], abs=1e-12), column
        assert (
            r["spread"] > 0
        )  # flow differs between problems (0.02 p): the per-problem rows are not the mean


def test_python_estimates_are_the_views(db):
    """head_scores under weights of ones gives head_metrics' flow, hub, skip and composite."""
    with open_warehouse(db, read_only=True) as wh, reading(wh.run(RUN_A)) as con:
        scores = con.sql("SELECT * FROM int_problem_head_scores WHERE run_id = ?", params=[RUN_A]).pl()
        incoming = con.sql(
            "SELECT * FROM int_problem_incoming WHERE run_id = ? AND position < 5", params=[RUN_A]
        ).pl()
        view = con.sql(
            "SELECT * FROM head_metrics WHERE run_id = ? ORDER BY layer, head", params=[RUN_A]
        ).pl()
    flow, _ = hubs.matrix(scores, "flow", ["layer", "head"])
    skip, _ = hubs.matrix(scores, "skip", ["layer", "head"])
    inc, _ = hubs.matrix(incoming, "incoming_norm", ["layer", "head", "position"])
    got = hubs.head_scores(flow, skip, inc.reshape(4, 4, 5), np.ones((1, 4)))[0]
    for i, column in enumerate(("flow", "hub", "skip", "composite")):
        assert got[i] == pytest.approx(view[column].to_numpy(), abs=1e-9), column


# --- bootstrap ----------------------------------------------------------------------------------------------
def test_hub_intervals_are_a_direct_problem_resampling(db, stats):
    data = rows(
        db,
        "SELECT problem_id, position, avg(incoming_norm) AS x FROM int_problem_incoming WHERE run_id = ? "
        "AND position < 5 GROUP BY ALL ORDER BY problem_id, position",
        [RUN_A],
    )
    x = np.array([d["x"] for d in data]).reshape(4, 5)
    counts = resample_counts(4, N_BOOT, np.random.default_rng(0))  # the seed stats uses
    means, ratios = [], []
    for row in counts.astype(int):
        sample = x[np.repeat(np.arange(4), row)]  # the drawn problems, each as often as drawn
        means.append(sample.mean(0))
        ratios.append(sample.mean(0).max() / sample.mean(0).mean())
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    table = stats.hubs.filter(stats.hubs["position"] < 5)
    assert table["incoming_norm_low"].to_numpy() == pytest.approx(low, abs=1e-12)
    assert table["incoming_norm_high"].to_numpy() == pytest.approx(high, abs=1e-12)
    assert (table["incoming_norm_low"] <= table["incoming_norm"]).all()
    assert (table["incoming_norm"] <= table["incoming_norm_high"]).all()
    assert low[1] < high[1] and stats.hubs["incoming_norm_low"][5] is None  # T5: no later thought, no bar
    assert (stats.hub["ratio_low"], stats.hub["ratio_high"]) == pytest.approx(
        tuple(np.percentile(ratios, [2.5, 97.5])), abs=1e-12
    )
    assert stats.hub["ratio"] == pytest.approx(stats.hubs["hub_ratio"][0], abs=0)  # the view's estimate
    assert stats.hub["ratio_low"] <= stats.hub["ratio"] <= stats.hub["ratio_high"]


# --- the hub test -------------------------------------------------------------------------------------------
def test_permutation_p_is_the_exact_permutation_distribution():
    rng = np.random.default_rng(0)
    x = rng.random((2, 5))
    ratio = hubs.hub_ratio(x.mean(0))
    perms = list(itertools.permutations(range(5)))
    exact = np.mean([hubs.hub_ratio((x[0, a] + x[1, b]) / 2) >= ratio - 1e-12 for a in perms for b in perms])
    assert 0.05 < exact < 0.95
    assert hubs.hub_permutation_p(x, 20000, np.random.default_rng(1)) == pytest.approx(exact, abs=0.01)
    assert hubs.hub_permutation_p(x[:1], 50, np.random.default_rng(1)) == 1.0  # one problem: nothing moves


def test_the_test_holds_its_level_under_the_null():
    """400 null datasets of 20 problems, tested at once: p < 0.05 in 2-9% of them, p roughly uniform.
    Both the exchangeable null and the one the data has (T_j averages 5 - j iid weights: unequal spread).
    (On 2,000 datasets each: 5.5% and 5.0% below 0.05, 1.0% and 0.9% below 0.01.)"""
    rng = np.random.default_rng(11)
    iid = rng.lognormal(0, 0.5, size=(400, 20, 5))
    shaped = per_thought(null_weights(rng, (400 * 20, 6, 6), sigma=1.0)).reshape(400, 20, 5)
    for x in (iid, shaped):
        p = hubs.hub_permutation_p(x, 200, np.random.default_rng(12))
        assert p.shape == (400,)
        assert 0.02 <= (p < 0.05).mean() <= 0.09
        assert 0.4 <= (p < 0.5).mean() <= 0.6
    planted = shaped.copy()
    planted[..., 2] *= 2
    assert (hubs.hub_permutation_p(planted, 200, np.random.default_rng(12)) < 0.05).mean() > 0.8


def test_a_planted_hub_is_named(planted):
    db, a = planted
    (table, hub), _ = tables(db)
    assert hub["thought"] == "T2" and hub["supported"] and hub["p"] < 0.01 and hub["problems"] == 30
    assert hub["finding"].startswith("T2 receives the most attention from later thoughts: ratio ")
    assert re.search(
        r": ratio \d\.\d\d \[\d\.\d\d, \d\.\d\d\], (p = [\d.e-]+|p < 0\.001) \(permutation, 30 problems\)$",
        hub["finding"],
    )
    want = per_thought(a).mean((1, 2)).mean(0)  # heads and layers averaged, then problems
    assert table["incoming_norm"][:5].to_numpy() == pytest.approx(want, rel=1e-6)
    assert hub["ratio"] == pytest.approx(want.max() / want.mean(), rel=1e-6)  # weights are stored as float32
    assert hub["ratio_low"] > 1 and hub["ratio_low"] <= hub["ratio"] <= hub["ratio_high"]


def test_a_flat_pattern_has_no_hub(flat):
    (_, hub), _ = tables(flat)
    assert not hub["supported"] and hub["p"] > 0.1
    assert hub["finding"].startswith("no thought stands out as a hub: ratio ")
    assert re.search(
        r"\], p = 0\.\d+ \(permutation, 30 problems\); the most attended, T\d, is within chance$",
        hub["finding"],
    )


# --- head types ---------------------------------------------------------------------------------------------
def test_flat_heads_get_no_type(flat):
    _, (heads, summary) = tables(flat)
    assert heads.height == 8 and summary["typed"] == {} and summary["none"] == 8
    assert set(heads["functional_type"]) == {"none"} and not heads["type_supported"].any()
    assert set(heads["functional_type_view"]) <= set(hubs.TYPE_SCORES) | {
        "Multi-Purpose"
    }  # the view still types
    assert heads["p_flow"].min() > 0.05
    for s in ("flow", "hub", "skip", "composite"):
        assert (heads[f"{s}_low"] <= heads[s] + 1e-12).all() and (
            heads[s] <= heads[f"{s}_high"] + 1e-12
        ).all()


def test_a_dominant_head_gets_its_type(tmp_path):
    rng = np.random.default_rng(9)
    a = null_weights(rng, (30, 2, 4, 6, 6), mean=0.1)
    idx = np.arange(1, 6)
    a[:, 1, 2, idx, idx - 1] += 0.15  # layer 1 head 2 attends to the previous thought
    _, (heads, summary) = tables(write_run(tmp_path / "w", a))
    top = heads.row(0, named=True)
    assert (top["layer"], top["head"], top["rank"]) == (1, 2, 1)
    # more attention to the previous thought also raises the hub score (T4's incoming gains 0.15, T0's 0.03)
    assert top["functional_type"] == top["functional_type_view"] == "Multi-Purpose" and top["type_supported"]
    assert top["p_flow"] < 0.001 and top["p_hub"] < 0.001 and top["flow_low"] > heads["flow"].median()
    assert set(heads["functional_type"][1:]) == {"none"}  # the seven others are alike
    assert summary["typed"] == {"Multi-Purpose": 1} and summary["heads"] == 8 and summary["none"] == 7


def test_holm_is_statsmodels_and_the_z_test_is_one_sided():
    from scipy.stats import norm
    from statsmodels.stats.multitest import multipletests

    p = np.array([[0.001, 0.04, 0.3], [0.02, np.nan, 0.01]])
    got = hubs.holm(p)
    ok = ~np.isnan(p)
    assert got[ok] == pytest.approx(multipletests(p[ok], method="holm")[1]) and np.isnan(got[1, 1])
    boot = np.random.default_rng(0).normal(size=(4000, 1, 5)) * np.array([0.0, 0.5, 0.0, 0.0, 0.0])
    estimate = np.array([[0.0, 1.5, -1.0, 0.0, 0.0]])  # median 0 in every resample: excess 0, 1.5, -1, 0, 0
    p = hubs.excess_p(estimate, boot + estimate, problems=10_000)
    se = boot[:, 0, 1].std(ddof=1) * np.sqrt(10_000 / 9_999)  # about 0.5: z about 3
    assert p[0, 1] == pytest.approx(norm.sf(1.5 / se), rel=1e-6) and p[0, 1] == pytest.approx(
        0.00135, rel=0.2
    )
    assert p[0, 2] == 1.0 and p[0, 0] == 1.0  # below or at the median head (se 0): never "above"


# --- end to end ---------------------------------------------------------------------------------------------
def test_stats_json_and_text_carry_the_hub_and_head_types(db, stats):
    out = CliRunner().invoke(
        cli, ["stats", "--run", RUN_A, "--boot", "300", "--perm", "300", "--db", db, "--json"]
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    hub = payload["hub"]
    assert hub["thought"] == "T4" and hub["problems"] == 4 and hub["n_perm"] == 300
    assert hub["ratio"] == pytest.approx(payload["hubs"][0]["hub_ratio"])
    assert hub["ratio_low"] <= hub["ratio"] <= hub["ratio_high"] and 0 < hub["p"] <= 1
    assert hub["finding"].startswith("T4 receives the most attention") == (hub["p"] < 0.05)
    assert {"incoming_norm_low", "incoming_norm_high"} <= set(payload["hubs"][0])
    row = payload["top_heads"][0]
    assert {"flow_low", "flow_high", "composite_low", "p_flow", "type_supported", "functional_type"} <= set(
        row
    )
    assert {r["functional_type"] for r in payload["top_heads"]} <= {
        *hubs.TYPE_SCORES,
        "Multi-Purpose",
        "none",
    }
    assert payload["head_types"]["heads"] == 4 and "Holm" in payload["head_types"]["rule"]
    # L1 H1: the view calls it Skip, but its skip (1/30) is below the median head's (0.05): no type
    l1h1 = next(r for r in payload["top_heads"] if (r["layer"], r["head"]) == (1, 1))
    assert l1h1["functional_type_view"] == "Skip" and l1h1["functional_type"] == "none"
    text = format_stats(stats)
    assert stats.hub["finding"] in text and hubs.head_sentences(stats)[0] in text
    assert hubs.findings_hubs(stats) == hubs.hub_sentences(stats) + hubs.head_sentences(stats)
    legacy = CliRunner().invoke(
        cli, ["stats", "--run", "run-c", "--boot", "100", "--perm", "100", "--db", db, "--json"]
    )
    assert legacy.exit_code == 0 and json.loads(legacy.stdout)["hub"] == {}


# --- charts -------------------------------------------------------------------------------------------------
def test_charts_show_the_intervals_and_untyped_heads(db, stats):
    from analysis import charts
    from analysis.export import chart_spec

    with open_warehouse(db, read_only=True) as wh:
        hub_spec = json.dumps(chart_spec(charts.hub_flow_skip(wh.run(RUN_A))))
        head_spec = chart_spec(charts.head_ranking(wh.run(RUN_A)))
    assert '"y2": {"field": "incoming_norm_high"' in hub_spec and "no later thought" in hub_spec
    assert "T5 has no later thought" in hub_spec
    # the chart's bootstrap and test are stats' (same defaults): its finding is stats' at 2,000 resamples
    assert stats.hub["finding"].split(": ratio")[0] in hub_spec and "permutation, 4 problems" in hub_spec
    text = json.dumps(head_spec)
    assert '"x2": {"field": "composite_high"' in text and '"none"' in text and "Holm" in text
    data = [row for rows_ in head_spec["datasets"].values() for row in rows_]
    types = {(r["layer"], r["head"]): (r["functional_type"], r["functional_type_view"]) for r in data}
    assert types[1, 1] == ("none", "Skip") and types[0, 0] == ("Multi-Purpose", "Multi-Purpose")
