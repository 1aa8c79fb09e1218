"""Charts of the pairs / triplets and components families: the thought x thought synergy matrix
(interactions) and the attention vs MLP output failure rates per thought (component_importance).

A run without the family gets a one-line placeholder; the report leaves these charts out for it
(registry.ChartInfo.families).
"""

from __future__ import annotations

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import PCT, Chart, draw, empty, facet, guard, heat_text, num, pct, titled
from analysis.charts._data import THOUGHTS, Runs, condition_label, rows, with_panel
from warehouse.handle import Run

SITES = ["attn", "mlp", "block"]
SITE_COLORS = ["#e45756", "#54a24b", "#9d9d9d"]


def _where(frame: pl.DataFrame) -> pl.DataFrame:
    """`where`: 'patch L1 · zero' (each panel is one patch layer and one corruption)."""
    labels = [
        f"patch L{layer} · {condition_label(m, s)}"
        for layer, m, s in zip(frame["patch_layer"], frame["method"], frame["sigma"], strict=True)
    ]
    return frame.with_columns(where=pl.Series(labels, dtype=pl.String))


def _synergy_matrix(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Thought x thought synergy of every pair corrupted together, per patch layer and corruption
    (interactions: joint failure rate minus the rate independent effects predict)."""
    title = "Synergy of thought pairs"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, method, sigma, thought_a, thought_b, n, joint_rate, rate_a, rate_b, "
        "expected, synergy, mean_logp_drop FROM interactions WHERE {runs} AND size = 2",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no pairs of thoughts in this run (--families pairs)")
    # each pair in both cells (a, b) and (b, a): a symmetric matrix
    mirrored = frame.rename(
        {"thought_a": "thought_b", "thought_b": "thought_a", "rate_a": "rate_b", "rate_b": "rate_a"}
    )
    frame = pl.concat([frame, mirrored.select(frame.columns)])
    frame = _where(frame).with_columns(
        row_name=pl.format("T{}", pl.col("thought_a")), column_name=pl.format("T{}", pl.col("thought_b"))
    )
    frame, panels = with_panel(frame, runs, patch_column=None, extra="where")
    top = max(float(frame["synergy"].abs().max() or 0.0), 0.05)  # type: ignore[arg-type]
    base = alt.Chart().encode(
        x=alt.X("column_name:N", sort=THOUGHTS, title="thought", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("row_name:N", sort=THOUGHTS, title="thought"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "synergy:Q",
            title="synergy",
            legend=alt.Legend(format="+.0%"),
            scale=alt.Scale(scheme="redblue", reverse=True, domain=[-top, top]),
        ),
        tooltip=[
            "run:N",
            "where:N",
            "row_name:N",
            "column_name:N",
            "n:Q",
            pct("joint_rate", "joint failure rate"),
            pct("rate_a", "row thought alone"),
            pct("rate_b", "column thought alone"),
            pct("expected", "expected (independent)"),
            alt.Tooltip("synergy:Q", format="+.1%", title="synergy"),
            num("mean_logp_drop", "mean log p drop"),
        ],
    )
    text = heat_text(base, "synergy", "+.0%", top * 0.55, both_signs=True)
    chart = alt.layer(rect, text, data=guard(frame, title)).properties(
        width=alt.Step(40), height=alt.Step(30)
    )
    return facet(chart, panels, 3).properties(
        title=titled(
            title,
            "synergy = joint failure rate of the two thoughts corrupted together minus "
            "1 - (1 - p_a)(1 - p_b), what independent effects predict; red: they break more together, "
            "blue: less (redundant)",
            "rates among baseline-correct problems; `stats` gives the bootstrap interval and p of each pair",
            panels[0] if len(panels) == 1 else "",
        )
    )


def _component_sites(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Failure rate per thought when the attention output, the MLP output or the whole block output of the
    patch layer is corrupted, with 95% Wilson intervals (component_importance)."""
    title = "Attention vs MLP output"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, thought_name, site, method, sigma, n, failures, failure_rate, ci_low, "
        "ci_high, mean_logp_drop, mean_kl FROM component_importance WHERE {runs}",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no component rows in this run (--families components)")
    frame, panels = with_panel(_where(frame), runs, patch_column=None, extra="where")
    x = alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("site:N", sort=SITES)
    tooltip = [
        "run:N",
        "where:N",
        "thought_name:N",
        "site:N",
        "n:Q",
        "failures:Q",
        pct("failure_rate", "failure rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        num("mean_logp_drop", "mean log p drop"),
        num("mean_kl", "mean KL"),
    ]
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.85)
        .encode(
            x=x,
            xOffset=offset,
            y=alt.Y("failure_rate:Q", title="failure rate", axis=PCT),
            color=alt.Color(
                "site:N",
                sort=SITES,
                scale=alt.Scale(domain=SITES, range=SITE_COLORS),
                legend=alt.Legend(title="corrupted output", orient="bottom"),
            ),
            tooltip=tooltip,
        )
    )
    err = (
        alt.Chart()
        .mark_rule(strokeWidth=1.5, color="#222")
        .encode(x=x, xOffset=offset, y="ci_low:Q", y2="ci_high:Q", tooltip=tooltip)
    )
    chart = alt.layer(bars, err, data=guard(frame, title)).properties(width=300, height=220)
    return facet(chart, panels, 3).properties(
        title=titled(
            title,
            "failure rate among baseline-correct problems when the attention output (attn), the MLP output "
            "(mlp) or the whole block output (block) of the patch layer is corrupted at the thought",
            "lines: 95% Wilson interval; `stats` tests attn vs mlp (McNemar)",
            panels[0] if len(panels) == 1 else "",
        )
    )


def synergy_matrix(run: Run, vs: Run | None = None) -> Chart:
    """Thought x thought synergy of every pair corrupted together, per patch layer and corruption."""
    return draw(_synergy_matrix, run, vs)


def component_sites(run: Run, vs: Run | None = None) -> Chart:
    """Failure rate per thought for the attention output, the MLP output and the block output."""
    return draw(_component_sites, run, vs)
