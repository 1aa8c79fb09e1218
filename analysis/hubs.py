"""Hubs and head types with their uncertainty: bootstrap intervals over problems, a permutation test
against "no hub", and functional head types only where a multiple-comparison test supports them.

The views compute every estimate (hub_scores, head_metrics); this module reads their per-problem
intermediates (int_problem_incoming, int_problem_head_scores, whose means over problems are the views'
numbers) and adds intervals and tests. Problems are the independent units: the bootstrap resamples whole
problems, the permutation test moves labels inside one problem.

**The hub test.** hub_ratio = max / mean over T0..T4 of incoming_norm, incoming_norm_j the mean attention
Tj receives from each later thought (T5 has none: it is left out). Null hypothesis "no hub": within a
problem, the five values x_p0..x_p4 are exchangeable, no thought position is favoured. Under it, shuffling
the five labels inside each problem (independently per problem) gives every arrangement the same chance,
so the permutation distribution of the ratio is its null distribution and the test is exact. The mean of
the five values of a problem is unchanged by the shuffle, so the ratio's denominator is fixed and the test
is a max-T test over thoughts: when it rejects, the thought with the largest mean is the one that stands
out (Westfall-Young single-step max-T), so naming it is covered by the same p.
Exchangeability is more than equal means: x_pj averages 5 - j later thoughts, so T4's value (one weight)
varies more than T0's (a mean of five). The ratio depends on the column means only, and shuffling mixes
the rows' noise across labels; tests/test_hubs.py checks that with unequal noise of exactly this shape
(per-pair weights iid, averaged over 5 - j later thoughts) the test keeps its level (p < 0.05 in 2-9% of
200 null datasets). What it cannot separate: a position effect common to all problems (attention that
decays with distance favours the thoughts whose later thoughts are close, i.e. T4) is "a hub" to it.

**Head types.** For each head h and score s in (flow, hub, skip): the excess e_hs = s_h - median over the
run's heads of s. Its standard error se is the standard deviation of e over bootstrap resamples of problems
(the median recomputed in each) times sqrt(n / (n - 1)); one-sided z-test p = P(Z > e / se) (a normal
approximation, rough with few problems: bootstrap p-values themselves cannot reach Holm's thresholds over
hundreds of tests); Holm adjustment over every head and score of the run (statsmodels multipletests). A
score is *supported* when its adjusted p < alpha (0.05). The view's functional_type is kept
(`functional_type_view`) and `functional_type` is that type where the scores it names are all supported
(Sequential: flow; Hub: hub; Skip: skip; Multi-Purpose: each score whose scaled value exceeds 0.7), else
"none". The median head, not the next-best one, is the reference: a type says what a head does more than
a typical head, and several heads may share it.

    hubs, hub = hub_table(con, run_id, n_boot, n_perm, seed)
    heads, summary = head_table(con, run_id, n_boot, seed)
    findings_hubs(stats)                       # sentences with intervals and p-values
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import polars as pl

from analysis.frames import clean, fetch
from analysis.resampling import LEVEL, interval, resample_counts

ALPHA = 0.05
HUB_THOUGHTS = 5  # T0..T4: the thoughts with a later thought
SCORES = ("flow", "hub", "skip")
TYPE_SCORES = {"Sequential": ("flow",), "Hub": ("hub",), "Skip": ("skip",)}
MULTI = 0.7  # head_metrics: Multi-Purpose when two scaled scores exceed it
NONE = "none"
HEAD_RULE = (
    "a head gets the view's functional type only when each score that type names (Sequential: flow, "
    "Hub: hub, Skip: skip, Multi-Purpose: every score scaled above 0.7) exceeds the median head's by more "
    "than chance: one-sided z-test of (score - median head's score) with its problem-bootstrap standard "
    f"error, Holm-adjusted over all heads and scores, p < {ALPHA}; else 'none'"
)
HEAD_COLUMNS = [
    *(f"{s}_{end}" for s in (*SCORES, "composite") for end in ("low", "high")),
    *(f"p_{s}" for s in SCORES),
]
RUN = "WHERE run_id = ?"


# --- resampling -----------------------------------------------------------------------------------------
def weighted_means(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Means over problems of x ([problems, ...], NaN = missing) under each row of weights [B, problems]:
    [B, ...]. Weights of ones give the plain mean; resampling counts give a bootstrap replicate."""
    flat = x.reshape(x.shape[0], -1)
    ok = ~np.isnan(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ np.where(ok, flat, 0.0)) / (weights @ ok)
    return means.reshape(weights.shape[0], *x.shape[1:])


def hub_ratio(means: np.ndarray) -> np.ndarray:
    """max / mean along the last axis (the thoughts T0..T4)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return means.max(-1) / means.mean(-1)


def hub_permutation_p(x: np.ndarray, n_perm: int, rng: np.random.Generator, chunk: int = 200) -> np.ndarray:
    """Permutation p of the hub ratio of x ([..., problems, thoughts], complete rows): thought labels
    shuffled within each problem. p = (1 + #{ratio_perm >= ratio}) / (1 + n_perm), one per leading index
    (so many datasets are tested at once)."""
    observed = hub_ratio(x.mean(-2))
    hits = np.zeros(observed.shape)
    for start in range(0, n_perm, chunk):
        size = min(chunk, n_perm - start)
        order = np.argsort(rng.random((size, *x.shape)), axis=-1)
        shuffled = np.take_along_axis(np.broadcast_to(x, order.shape), order, axis=-1)
        hits += (hub_ratio(shuffled.mean(-2)) >= observed - 1e-12).sum(0)
    return (1 + hits) / (1 + n_perm)


def matrix(frame: pl.DataFrame, column: str, keys: list[str]) -> tuple[np.ndarray, pl.DataFrame]:
    """[problems, groups] of `column` (NaN where a problem lacks a group), problems in id order, groups in
    key order; and the groups."""
    groups = frame.select(keys).unique().sort(keys)
    g = frame.join(groups.with_row_index("_g"), on=keys, how="left", maintain_order="left")["_g"].to_numpy()
    p = (frame["problem_id"].rank("dense").to_numpy() - 1).astype(int)
    out = np.full((int(p.max()) + 1, groups.height), np.nan)
    out[p, g] = frame[column].to_numpy().astype(float)
    return out, groups


# --- hubs -----------------------------------------------------------------------------------------------
def hub_table(
    con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, n_perm: int, seed: int, alpha: float = ALPHA
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """hub_scores plus incoming_norm_low/high (problem bootstrap), and the hub: ratio, interval,
    permutation p and the finding ({} for a run without per-problem attention: legacy, none captured)."""
    view = fetch(con, f"SELECT * FROM hub_scores {RUN} ORDER BY position", [run_id])
    per_problem = fetch(
        con,
        "SELECT problem_id, position, avg(incoming_norm) AS incoming_norm FROM int_problem_incoming "
        f"{RUN} AND position BETWEEN 0 AND {HUB_THOUGHTS - 1} GROUP BY problem_id, position",
        [run_id],
    )
    nulls = [pl.lit(None, pl.Float64).alias(c) for c in ("incoming_norm_low", "incoming_norm_high")]
    if per_problem.is_empty():
        return view.with_columns(*nulls), {}
    x, groups = matrix(per_problem, "incoming_norm", ["position"])
    counts = resample_counts(x.shape[0], n_boot, np.random.default_rng(seed))
    boot = weighted_means(x, counts)
    low, high = interval(boot)
    bounds = groups.with_columns(
        pl.Series("incoming_norm_low", low), pl.Series("incoming_norm_high", high)
    ).with_columns(pl.col("position").cast(view["position"].dtype))
    table = view.join(bounds, on="position", how="left")
    complete = x[~np.isnan(x).any(1)]
    thoughts = view.filter(
        pl.col("position").is_between(0, HUB_THOUGHTS - 1) & pl.col("incoming_norm").is_not_null()
    )
    top = thoughts.sort("incoming_norm", descending=True, maintain_order=True).row(0, named=True)
    ratio_low, ratio_high = interval(hub_ratio(boot)[:, None])
    p = (
        float(hub_permutation_p(complete, n_perm, np.random.default_rng([seed, 1])))
        if len(complete)
        else None
    )
    hub = {
        "thought": top["position_name"],
        "position": top["position"],
        "incoming_norm": top["incoming_norm"],
        "ratio": top["hub_ratio"],
        "ratio_low": float(ratio_low[0]),
        "ratio_high": float(ratio_high[0]),
        "p": p,
        "problems": int(len(complete)),
        "n_perm": n_perm,
        "alpha": alpha,
        "level": LEVEL,
        "supported": p is not None and p < alpha,
    }
    return table, {k: clean(v) for k, v in {**hub, "finding": hub_finding(hub)}.items()}


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def hub_finding(hub: dict[str, Any]) -> str:
    """One sentence: the hub named with its ratio, interval and p, or that no thought stands out."""
    numbers = (
        f"ratio {hub['ratio']:.2f} [{hub['ratio_low']:.2f}, {hub['ratio_high']:.2f}], {_p(hub['p'])} "
        f"(permutation, {hub['problems']} problems)"
    )
    if hub["supported"]:
        return f"{hub['thought']} receives the most attention from later thoughts: {numbers}"
    return f"no thought stands out as a hub: {numbers}; the most attended, {hub['thought']}, is within chance"


# --- heads ----------------------------------------------------------------------------------------------
def _scaled(x: np.ndarray) -> np.ndarray:
    """Min-max over heads (last axis), 0 where every head is equal: head_metrics' *_scaled."""
    low, high = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    span = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (x - low) / np.where(span > 0, span, 1), 0.0)


def head_scores(flow: np.ndarray, skip: np.ndarray, incoming: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B, 4, heads]: flow, hub, skip and composite under each weighting of problems (flow, skip
    [problems, heads], incoming [problems, heads, T0..T4]); hub = variance over thoughts of incoming_norm."""
    f, s = weighted_means(flow, weights), weighted_means(skip, weights)
    hub = weighted_means(incoming, weights).var(-1)
    composite = 0.4 * _scaled(f) + 0.4 * _scaled(hub) + 0.2 * _scaled(s)
    return np.stack([f, hub, s, composite], axis=1)


def excess_p(estimate: np.ndarray, boot: np.ndarray, problems: int) -> np.ndarray:
    """One-sided p of each head's excess over the median head (estimate [scores, heads], boot
    [B, scores, heads]): z = excess / se, se = the bootstrap standard deviation times sqrt(n / (n - 1))
    (the bootstrap's variance of a mean is the n-divisor one), p = P(Z > z); se 0: p 0 when above, else 1."""
    from scipy import stats  # here: importing scipy takes most of a second

    excess = estimate - np.median(estimate, axis=-1, keepdims=True)
    spread = (boot - np.median(boot, axis=-1, keepdims=True)).std(axis=0, ddof=1)
    se = spread * np.sqrt(problems / max(problems - 1, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, excess / np.where(se > 0, se, 1), np.where(excess > 0, np.inf, -np.inf))
    return stats.norm.sf(z)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels), same shape."""
    from statsmodels.stats.multitest import multipletests

    flat = p.ravel()
    adjusted = np.full(flat.shape, np.nan)
    ok = ~np.isnan(flat)
    if ok.any():
        adjusted[ok] = multipletests(flat[ok], method="holm")[1]
    return adjusted.reshape(p.shape)


def supported_type(
    view_type: str | None, scaled: dict[str, float], adjusted: dict[str, float], alpha: float
) -> bool:
    """Whether every score the view's type names is Holm-significant above the median head."""
    if view_type is None:
        return False
    names = TYPE_SCORES.get(view_type) or tuple(s for s in SCORES if scaled[s] > MULTI)
    return bool(names) and all(adjusted[s] < alpha for s in names)


def head_table(
    con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int, alpha: float = ALPHA
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every head of head_metrics plus bootstrap intervals of flow, hub, skip and composite, Holm-adjusted
    p of each score above the median head, type_supported and the gated functional_type (the view's kept
    as functional_type_view); and a summary (heads, problems, typed heads per type, the rule)."""
    view = fetch(con, f"SELECT * FROM head_metrics {RUN} ORDER BY rank, layer, head", [run_id])
    scores = fetch(
        con, f"SELECT problem_id, layer, head, flow, skip FROM int_problem_head_scores {RUN}", [run_id]
    )
    incoming = fetch(
        con,
        "SELECT problem_id, layer, head, position, incoming_norm FROM int_problem_incoming "
        f"{RUN} AND position BETWEEN 0 AND {HUB_THOUGHTS - 1}",
        [run_id],
    )
    view = view.rename({"functional_type": "functional_type_view"})
    if scores.is_empty():
        empty = [pl.lit(None, pl.Float64).alias(c) for c in HEAD_COLUMNS]
        return view.with_columns(
            *empty, type_supported=pl.lit(None, pl.Boolean), functional_type=pl.lit(None, pl.String)
        ), {}
    flow, heads = matrix(scores, "flow", ["layer", "head"])
    skip, _ = matrix(scores, "skip", ["layer", "head"])
    inc, cells = matrix(incoming, "incoming_norm", ["layer", "head", "position"])
    inc = inc.reshape(inc.shape[0], heads.height, HUB_THOUGHTS)  # cells sort by (layer, head), then T0..T4
    assert cells.height == heads.height * HUB_THOUGHTS
    counts = resample_counts(flow.shape[0], n_boot, np.random.default_rng([seed, 2]))
    boot = head_scores(flow, skip, inc, counts)
    estimate = head_scores(flow, skip, inc, np.ones((1, flow.shape[0])))[0]
    low, high = interval(boot)
    adjusted = holm(excess_p(estimate[:3], boot[:, :3], flow.shape[0]))
    columns: dict[str, Any] = {}
    for i, name in enumerate((*SCORES, "composite")):
        columns[f"{name}_low"], columns[f"{name}_high"] = low[i], high[i]
    for i, name in enumerate(SCORES):
        columns[f"p_{name}"] = adjusted[i]
    extra = heads.with_columns(**{k: pl.Series(k, v, pl.Float64) for k, v in columns.items()})
    extra = extra.with_columns(pl.col("layer", "head").cast(pl.Int64))
    table = view.with_columns(pl.col("layer", "head").cast(pl.Int64)).join(
        extra, on=["layer", "head"], how="left", maintain_order="left"
    )
    support = [
        supported_type(
            r["functional_type_view"],
            {s: r[f"{s}_scaled"] for s in SCORES},
            {s: r[f"p_{s}"] for s in SCORES},
            alpha,
        )
        for r in table.iter_rows(named=True)
    ]
    table = table.with_columns(type_supported=pl.Series(support, dtype=pl.Boolean)).with_columns(
        functional_type=pl.when(pl.col("type_supported"))
        .then(pl.col("functional_type_view"))
        .otherwise(pl.lit(NONE))
    )
    typed = table.filter(pl.col("type_supported"))["functional_type"].value_counts(sort=True)
    summary = {
        "heads": table.height,
        "problems": int(flow.shape[0]),
        "typed": dict(zip(typed["functional_type"].to_list(), typed["count"].to_list(), strict=True)),
        "none": int(table.height - typed["count"].sum()),
        "alpha": alpha,
        "rule": HEAD_RULE,
    }
    return table, summary


# --- words ----------------------------------------------------------------------------------------------
def hub_sentences(stats: Any) -> list[str]:
    """The hub finding of a RunStats, as a sentence (none without a hub test)."""
    hub = getattr(stats, "hub", None) or {}
    return [hub["finding"] + "."] if hub.get("finding") else []


def head_sentences(stats: Any) -> list[str]:
    """How many heads have a supported functional type, and the top-ranked ones with their intervals."""
    summary = getattr(stats, "head_types", None) or {}
    if not summary:
        return []
    heads, typed, alpha, problems = summary["heads"], summary["typed"], summary["alpha"], summary["problems"]
    if not typed:
        return [
            f"no head's flow, hub or skip score stands out from the median head's beyond chance (Holm, "
            f"alpha {alpha}, {heads} heads, {problems} problems): every functional type is 'none'."
        ]
    kinds = ", ".join(f"{n} {t}" for t, n in typed.items())
    top = stats.top_heads.filter(pl.col("type_supported").fill_null(False))
    named = "; ".join(
        f"L{r['layer']} H{r['head']} {r['functional_type']} ("
        + ", ".join(
            f"{s} {r[s]:.3g} [{r[f'{s}_low']:.3g}, {r[f'{s}_high']:.3g}], {_p(r[f'p_{s}'])}"
            for s in _named_scores(r)
        )
        + ")"
        for r in top.head(3).iter_rows(named=True)
    )
    return [
        f"{sum(typed.values())} of {heads} heads stand out from the median head on the score their type "
        f"names (Holm, alpha {alpha}, {problems} problems): {kinds}"
        + (f"; top-ranked: {named}" if named else "")
        + "."
    ]


def _named_scores(row: dict[str, Any]) -> tuple[str, ...]:
    return TYPE_SCORES.get(row["functional_type"]) or tuple(s for s in SCORES if row[f"{s}_scaled"] > MULTI)


def findings_hubs(stats: Any) -> list[str]:
    """Plain sentences with their uncertainty about the hub and the head types of a RunStats."""
    return hub_sentences(stats) + head_sentences(stats)
