"""Method agreement (RQ2): do the corruption methods rank the thoughts alike? A heatmap of Spearman's rho
between every pair of methods' thought profiles (method_thought_profile: failure rate per thought, sigmas
pooled, the clean control left out), with Kendall's W over the methods and its permutation p in the
panel's label. rho, W and the p-values are analysis.inference's (the same functions `stats` uses)."""

from __future__ import annotations

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import Chart, draw, empty, facet, guard, heat_text, notes, num, titled
from analysis.charts._data import METHOD_ORDER, Runs, rows
from analysis.inference import agreement
from warehouse.handle import Run

N_PERM, SEED = 2000, 0  # as `stats` by default: the chart's W p-value is the one `stats` prints


def _method_agreement(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Spearman rho between methods' thought profiles, W and its p per panel (method_thought_profile)."""
    title = "Do corruption methods agree on which thoughts matter?"
    profile = rows(
        con,
        "SELECT run_id, patch_layer, method, thought, thought_name, n, failure_rate "
        "FROM method_thought_profile WHERE {runs} ORDER BY run_id, patch_layer, method, thought",
        runs,
    )
    cells, panels = [], []
    for run_id in runs.ids:
        part = profile.filter(pl.col("run_id") == run_id)
        if part.is_empty():
            continue
        w_frame, pairs = agreement(part, N_PERM, SEED)
        for w_row in w_frame.to_dicts():
            if w_row["n_methods"] < 2:  # nothing to compare: one method (or none) with a varying profile
                continue
            patch_layer = w_row["patch_layer"]
            label = []
            if runs.pair:
                label.append(runs.letters[run_id])
            if runs.multi_patch:
                label.append(f"patch L{patch_layer}")
            w_text = f"W = {w_row['w']:.2f}, p = {w_row['p_perm']:.3g}" if w_row["w"] is not None else "W n/a"
            panel = " · ".join([*label, w_text])
            panels.append(panel)
            methods = [m for m in w_row["methods"].split(", ") if m]
            mine = pairs.filter(pl.col("patch_layer") == patch_layer).to_dicts()
            rho = {(r["method_a"], r["method_b"]): r for r in mine}
            for a in methods:
                for b in methods:
                    hit = rho.get((a, b)) or rho.get((b, a))
                    cells.append(
                        {
                            "run": runs.labels[run_id],
                            "panel": panel,
                            "patch_layer": patch_layer,
                            "method_a": a,
                            "method_b": b,
                            "rho": 1.0 if a == b else (hit or {}).get("rho"),
                            "p_exact": None if a == b else (hit or {}).get("p_exact"),
                            "thoughts": w_row["thoughts"],
                            "w": w_row["w"],
                            "p_w": w_row["p_perm"],
                        }
                    )
    if not cells:
        return empty(title, "needs two corruption methods whose thought profiles vary (clean left out)")
    frame = guard(pl.DataFrame(cells, infer_schema_length=None), title)
    order = [m for m in METHOD_ORDER if m in set(frame["method_a"])] + sorted(
        set(frame["method_a"]) - set(METHOD_ORDER)
    )
    base = alt.Chart().encode(
        x=alt.X("method_a:N", sort=order, title="method", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("method_b:N", sort=order, title="method"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "rho:Q", title="Spearman rho", scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True)
        ),
        tooltip=[
            "run:N",
            "patch_layer:O",
            "method_a:N",
            "method_b:N",
            "thoughts:Q",
            num("rho", "Spearman rho", ".2f"),
            num("p_exact", "exact permutation p", ".3g"),
            num("w", "Kendall's W", ".2f"),
            num("p_w", "W permutation p", ".3g"),
        ],
    )
    text = heat_text(base, "rho", ".2f", 0.6, both_signs=True)
    chart = alt.layer(rect, text, data=frame).properties(width=alt.Step(56), height=alt.Step(30))
    return facet(chart, panels).properties(
        title=titled(
            title,
            "Spearman rho between methods' failure rates per thought (sigmas pooled, clean left out); "
            f"panel: Kendall's W over the methods, permutation p ({N_PERM} shuffles)",
            notes(runs),
        )
    )


def method_agreement(run: Run, vs: Run | None = None) -> Chart:
    """Spearman rho between methods' thought profiles, W and its p per panel (method_thought_profile)."""
    return draw(_method_agreement, run, vs)
