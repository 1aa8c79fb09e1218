"""The heads and edges families in `stats`: causal effects of ablating attention heads and of knocking out
attention to one thought, set against what attention alone describes (head_metrics' composite, the hub).

The views give every estimate (head_effects, head_topk_effects, edge_knockout, edge_knockout_problems);
this module adds what SQL lacks, on rows pulled from them and from int_family_outcomes (their per-problem
rows):

- heads: each head's failure rate with the view's Wilson interval and a bootstrap interval over problems;
  per method and step scope, Spearman's rho between the heads' causal effect (failure rate, and mean
  log p(gold) drop) and their descriptive composite, with scipy.stats.spearmanr's p and a bootstrap
  interval of rho (problems resampled, each head's effect recomputed, the composite held fixed: it is the
  attention's, measured on the same problems but not what is being resampled here). The `clean` control
  is left out of the correlations. Holm over the run's rho tests.
- edges: per layer scope, the knockout of the descriptive hub (the thought later thoughts attend to most)
  against the knockout of each other thought, paired per problem (baseline-correct problems with both
  rows): McNemar's exact test (statsmodels) on the discordant problems, the paired difference of failure
  rates with a bootstrap interval over problems, Holm over the run's comparisons.
- findings: a sentence per question ("do the heads that look like hubs matter?", "is the descriptive hub
  causal?") with its uncertainty.

Every function returns an empty frame for a run without the family; `stats` then shows no section.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import polars as pl

from analysis.combos import mcnemar_p
from analysis.frames import fetch, rate_intervals
from analysis.inference import ALPHA, _spearman
from analysis.resampling import interval, resample_counts

RUN = "WHERE run_id = ?"
CONTROL = "clean"  # the control method: it writes the clean value back and must change nothing
HEAD_KEYS = ["layer", "head", "method", "steps"]
CORRELATION_COLUMNS = {
    "method": pl.String,
    "steps": pl.String,
    "heads": pl.Int64,
    "rho_failure": pl.Float64,
    "rho_failure_low": pl.Float64,
    "rho_failure_high": pl.Float64,
    "p_failure": pl.Float64,
    "rho_logp": pl.Float64,
    "rho_logp_low": pl.Float64,
    "rho_logp_high": pl.Float64,
    "p_logp": pl.Float64,
}
EDGE_TEST_COLUMNS = {
    "layers": pl.String,
    "layer": pl.Int64,
    "hub_thought": pl.Int64,
    "hub_name": pl.String,
    "thought": pl.Int64,
    "thought_name": pl.String,
    "problems": pl.Int64,
    "failure_rate_hub": pl.Float64,
    "failure_rate_other": pl.Float64,
    "difference": pl.Float64,
    "diff_low": pl.Float64,
    "diff_high": pl.Float64,
    "hub_only": pl.Int64,
    "other_only": pl.Int64,
    "p_mcnemar": pl.Float64,
}


# --- heads ------------------------------------------------------------------------------------------------
def head_effects_table(con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int) -> pl.DataFrame:
    """head_effects of the run plus boot_low/boot_high: a bootstrap interval of each failure rate over
    problems."""
    view = fetch(con, f"SELECT * FROM head_effects {RUN} ORDER BY method, steps, layer, head", [run_id])
    per_problem = fetch(
        con,
        "SELECT layer, head, method, steps, problem_id, count(*) FILTER (WHERE failed) AS failures, "
        f"count(*) AS trials FROM int_family_outcomes {RUN} AND family = 'heads' AND head IS NOT NULL "
        "AND base_correct GROUP BY ALL",
        [run_id],
    )
    if view.is_empty():
        return view
    boot = rate_intervals(per_problem, HEAD_KEYS, n_boot, seed)
    boot = boot.with_columns(pl.col(c).cast(view[c].dtype) for c in HEAD_KEYS)
    return view.join(boot, on=HEAD_KEYS, how="left", nulls_equal=True, maintain_order="left")


def head_topk_table(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """head_topk_effects of the run: the heads ablated together."""
    return fetch(con, f"SELECT * FROM head_topk_effects {RUN} ORDER BY method, steps, k, heads", [run_id])


def _head_problem_matrices(
    con: duckdb.DuckDBPyConnection, run_id: str, method: str, steps: str, heads: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[heads, problems] of failed (among baseline-correct problems; NaN elsewhere), of logp_drop (NaN where
    missing) and of whether the problem counts as a trial; heads in the order of `heads` (layer, head)."""
    rows = fetch(
        con,
        "SELECT layer, head, problem_id, base_correct, failed, logp_drop FROM int_family_outcomes "
        f"{RUN} AND family = 'heads' AND head IS NOT NULL AND method = ? AND steps = ?",
        [run_id, method, steps],
    )
    problems = sorted(rows["problem_id"].unique().to_list())
    p_index = {p: i for i, p in enumerate(problems)}
    h_index = {(r["layer"], r["head"]): i for i, r in enumerate(heads.iter_rows(named=True))}
    failed = np.zeros((len(h_index), len(problems)))
    trials = np.zeros_like(failed)
    drops = np.full_like(failed, np.nan)
    for r in rows.iter_rows(named=True):
        h = h_index.get((r["layer"], r["head"]))
        if h is None:
            continue
        p = p_index[r["problem_id"]]
        if r["base_correct"]:
            trials[h, p] += 1
            failed[h, p] += bool(r["failed"])
        if r["logp_drop"] is not None and r["base_correct"] is not None:
            drops[h, p] = r["logp_drop"]
    return failed, trials, drops


def spearman_p(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """scipy.stats.spearmanr of x and y (ties averaged); None where it is undefined (constant or < 3)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def _rho_interval(effects: np.ndarray, composite: np.ndarray) -> tuple[float | None, float | None]:
    """2.5th and 97.5th percentiles of rho over bootstrap replicates [B, heads] of the effects against the
    fixed composite; replicates where rho is undefined (every head alike) are left out."""
    rho = _spearman(effects, np.broadcast_to(composite, effects.shape))
    low, high = interval(rho)
    return (None if np.isnan(low) else float(low)), (None if np.isnan(high) else float(high))


def head_correlation_table(
    con: duckdb.DuckDBPyConnection, run_id: str, effects: pl.DataFrame, n_boot: int, seed: int
) -> pl.DataFrame:
    """Per method and step scope (the clean control left out): Spearman's rho of the heads' failure rate
    and of their mean log p(gold) drop against the descriptive composite, scipy's p, and a bootstrap
    interval of each rho over problems. `effects`: head_effects_table's frame."""
    out: list[dict[str, Any]] = []
    usable = effects.filter((pl.col("method") != CONTROL) & pl.col("composite").is_not_null())
    for (method, steps), group in usable.group_by(["method", "steps"], maintain_order=True):
        group = group.sort("layer", "head")
        composite = group["composite"].to_numpy().astype(float)
        rate = group["failure_rate"].to_numpy().astype(float)
        drop = group["mean_logp_drop"].to_numpy().astype(float)
        rho_f, p_f = spearman_p(rate, composite)
        rho_l, p_l = spearman_p(drop, composite)
        failed, trials, drops = _head_problem_matrices(con, run_id, str(method), str(steps), group)
        counts = resample_counts(failed.shape[1], n_boot, np.random.default_rng(seed)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot_rate = (counts @ failed.T) / (counts @ trials.T)
            present = ~np.isnan(drops)
            boot_drop = (counts @ np.where(present, drops, 0.0).T) / (counts @ present.T)
        f_low, f_high = _rho_interval(boot_rate, composite) if rho_f is not None else (None, None)
        l_low, l_high = _rho_interval(boot_drop, composite) if rho_l is not None else (None, None)
        out.append(
            {
                "method": method,
                "steps": steps,
                "heads": group.height,
                "rho_failure": rho_f,
                "rho_failure_low": f_low,
                "rho_failure_high": f_high,
                "p_failure": p_f,
                "rho_logp": rho_l,
                "rho_logp_low": l_low,
                "rho_logp_high": l_high,
                "p_logp": p_l,
            }
        )
    return pl.DataFrame(out, schema=CORRELATION_COLUMNS)


# --- edges ------------------------------------------------------------------------------------------------
def edge_table(con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int) -> pl.DataFrame:
    """edge_knockout of the run (every layer first, then each layer) plus a bootstrap interval of each
    failure rate over problems."""
    view = fetch(
        con, f"SELECT * FROM edge_knockout {RUN} ORDER BY layer NULLS FIRST, method, thought", [run_id]
    )
    if view.is_empty():
        return view
    keys = ["layers", "method", "thought"]
    per_problem = fetch(
        con,
        "SELECT layers, method, thought, problem_id, count(*) FILTER (WHERE failed) AS failures, "
        f"count(*) AS trials FROM edge_knockout_problems {RUN} AND base_correct GROUP BY ALL",
        [run_id],
    )
    boot = rate_intervals(per_problem, keys, n_boot, seed)
    boot = boot.with_columns(pl.col(c).cast(view[c].dtype) for c in keys)
    return view.join(boot, on=keys, how="left", nulls_equal=True, maintain_order="left")


def mcnemar_exact(hub_only: int, other_only: int) -> float:
    """McNemar's exact p (two-sided binomial on the discordant pairs; combos.mcnemar_p, statsmodels) from
    the discordant counts alone; 1 without any (nothing tells the two apart)."""
    found = mcnemar_p(0, hub_only, other_only, 0)
    return 1.0 if found is None else found


def edge_test_table(con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int) -> pl.DataFrame:
    """Per layer scope: the hub's knockout against each other thought's, paired per baseline-correct
    problem: both failure rates, their difference (hub - other) with a bootstrap interval over problems,
    the discordant counts and McNemar's exact p. Empty without a hub (no baseline attention)."""
    rows = fetch(
        con,
        "SELECT layers, layer, problem_id, thought, failed, hub_thought FROM edge_knockout_problems "
        f"{RUN} AND method = 'knockout' AND base_correct AND hub_thought IS NOT NULL "
        "ORDER BY layer NULLS FIRST, thought, problem_id",
        [run_id],
    )
    out: list[dict[str, Any]] = []
    for (layers,), scope in rows.group_by(["layers"], maintain_order=True):
        hub = int(scope["hub_thought"][0])
        wide = scope.pivot(on="thought", index="problem_id", values="failed", aggregate_function="first")
        if str(hub) not in wide.columns:
            continue
        for other in sorted(int(c) for c in wide.columns if c != "problem_id" and int(c) != hub):
            pair = wide.select(pl.col(str(hub)).alias("h"), pl.col(str(other)).alias("o")).drop_nulls()
            h = pair["h"].to_numpy().astype(float)
            o = pair["o"].to_numpy().astype(float)
            if not len(h):
                continue
            hub_only, other_only = int(((h == 1) & (o == 0)).sum()), int(((h == 0) & (o == 1)).sum())
            counts = resample_counts(len(h), n_boot, np.random.default_rng(seed)).astype(float)
            diff = (counts @ (h - o)) / counts.sum(1)
            low, high = interval(diff)
            out.append(
                {
                    "layers": layers,
                    "layer": scope["layer"][0],
                    "hub_thought": hub,
                    "hub_name": f"T{hub}",
                    "thought": other,
                    "thought_name": f"T{other}",
                    "problems": len(h),
                    "failure_rate_hub": float(h.mean()),
                    "failure_rate_other": float(o.mean()),
                    "difference": float(h.mean() - o.mean()),
                    "diff_low": float(low),
                    "diff_high": float(high),
                    "hub_only": hub_only,
                    "other_only": other_only,
                    "p_mcnemar": mcnemar_exact(hub_only, other_only),
                }
            )
    return pl.DataFrame(out, schema=EDGE_TEST_COLUMNS)


# --- findings ---------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _p(p: float | None) -> str:
    return "p n/a" if p is None else (f"p = {p:.2g}" if p >= 0.001 else "p < 0.001")


def _first(row: dict[str, Any], *names: str) -> Any:
    return next((row[n] for n in names if row.get(n) is not None), None)


def findings_heads(effects: pl.DataFrame, correlation: pl.DataFrame, topk: pl.DataFrame) -> list[str]:
    """ "Do the heads that look like hubs matter?": per method and step scope, the rank correlation of the
    heads' causal effect with their descriptive composite; the heads ablated together against the worst
    single head."""
    if effects.is_empty() and topk.is_empty():
        return []
    out = []
    if correlation.is_empty():
        out.append(
            "Heads: no rank correlation with the descriptive composite (the run has no baseline attention, "
            "so no head_metrics)."
        )
    for row in correlation.iter_rows(named=True):
        scope = f"{row['method']}, {'all six steps' if row['steps'] == 'all' else row['steps']}"
        rho, p = row["rho_failure"], _first(row, "p_failure_holm", "p_failure")
        if rho is None:
            out.append(
                f"Heads ({scope}): no rank correlation: {row['heads']} head(s) ablated this way, too few to "
                "rank (three are needed)."
                if row["heads"] < 3
                else f"Heads ({scope}): no rank correlation: every head's failure rate (or composite) over "
                f"the {row['heads']} heads is the same."
            )
            continue
        if p is not None and p < ALPHA:
            verdict = (
                "the heads that look like hubs matter: heads ranked higher by the descriptive composite "
                "break more answers when ablated"
                if rho > 0
                else "heads ranked higher by the descriptive composite break fewer answers when ablated"
            )
        else:
            verdict = "the descriptive composite does not detectably predict which heads matter causally"
        logp = (
            f"; against the mean log p(gold) drop rho = {row['rho_logp']:.2f} "
            f"({_fmt(row['rho_logp_low'])} to {_fmt(row['rho_logp_high'])}, "
            f"{_p(_first(row, 'p_logp_holm', 'p_logp'))})"
            if row["rho_logp"] is not None
            else ""
        )
        out.append(
            f"Heads ({scope}): {verdict}: Spearman rho between failure rate and composite = {rho:.2f} "
            f"(95% bootstrap interval over problems {_fmt(row['rho_failure_low'])} to "
            f"{_fmt(row['rho_failure_high'])}, Holm-adjusted {_p(p)}, {row['heads']} heads){logp}."
        )
    for row in topk.iter_rows(named=True):
        singles = effects.filter(
            (pl.col("method") == row["method"]) & (pl.col("steps") == row["steps"])
        ).sort("failure_rate", descending=True, nulls_last=True)
        worst = (
            f"; the most damaging single head, {singles['head_label'][0]}, fails "
            f"{_pct(singles['failure_rate'][0])}"
            if not singles.is_empty()
            else ""
        )
        ranked = {True: "the run's top-ranked heads", False: "not the run's top-ranked heads"}.get(
            row["top_ranked"], "heads"
        )
        out.append(
            f"Heads ablated together ({row['method']}, top-{row['k']}: {row['heads']}, {ranked}): "
            f"{_pct(row['failure_rate'])} of {row['n']} baseline-correct answers fail (Wilson 95% "
            f"{_pct(row['ci_low'])} to {_pct(row['ci_high'])}){worst}."
        )
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def findings_edges(edges: pl.DataFrame, tests: pl.DataFrame) -> list[str]:
    """ "Is the descriptive hub causal?": per layer scope, the hub's knockout against every other thought's
    (paired, McNemar exact, Holm-adjusted)."""
    if edges.is_empty():
        return []
    knock = edges.filter(pl.col("method") == "knockout")
    out = []
    for (layers,), scope in knock.group_by(["layers"], maintain_order=True):
        where = "at every layer" if layers == "all" else f"at layer {layers[1:]}"
        hub = scope.filter(pl.col("is_hub").fill_null(False))
        top = scope.sort("failure_rate", descending=True, nulls_last=True).row(0, named=True)
        if hub.is_empty():
            out.append(
                f"Edges ({where}): no descriptive hub to test (no baseline attention); knocking out "
                f"attention to {top['thought_name']} fails most often ({_pct(top['failure_rate'])} of "
                f"{top['n']})."
            )
            continue
        h = hub.row(0, named=True)
        own = (
            f"knocking out attention to the descriptive hub {h['thought_name']} {where} flips "
            f"{_pct(h['failure_rate'])} of {h['n']} baseline-correct answers (Wilson 95% "
            f"{_pct(h['ci_low'])} to {_pct(h['ci_high'])})"
        )
        rows = tests.filter(pl.col("layers") == layers) if not tests.is_empty() else tests
        if rows.is_empty():
            out.append(f"Edges: {own}; no other thought's knockout to compare it with.")
            continue
        p_col = "p_holm" if "p_holm" in rows.columns else "p_mcnemar"
        weakest = rows.sort([p_col, "difference"], descending=[True, False], nulls_last=False).row(
            0, named=True
        )
        beats_all = all(
            (r["difference"] or 0) > 0 and r[p_col] is not None and r[p_col] < ALPHA
            for r in rows.iter_rows(named=True)
        )
        against = (
            f"against {weakest['thought_name']}, its weakest comparison, the paired difference is "
            f"{weakest['difference']:+.0%} (95% bootstrap interval {weakest['diff_low']:+.0%} to "
            f"{weakest['diff_high']:+.0%} over {weakest['problems']} problems; McNemar exact, Holm-adjusted "
            f"{_p(weakest[p_col])} over the run's {tests.height} comparisons)"
        )
        if beats_all:
            verdict = (
                f"the descriptive hub is causal: its knockout breaks more answers than each of the "
                f"{rows.height} other thoughts'"
            )
        elif top["thought"] != h["thought"] and (top["failure_rate"] or 0) > (h["failure_rate"] or 0):
            verdict = (
                f"the descriptive hub is not shown to be causal: {top['thought_name']}'s knockout fails more "
                f"often ({_pct(top['failure_rate'])})"
            )
        else:
            verdict = (
                "the descriptive hub is not shown to be causal: its knockout is not detectably worse than "
                "every other thought's"
            )
        out.append(f"Edges: {own}; {verdict}; {against}.")
    return out
