"""Charts of the intervention families: ablated heads' causal effect against their descriptive composite
(head_effects), and the failure rate of knocking out attention to each thought, the descriptive hub
highlighted (edge_knockout). The report shows them only for runs that have the family."""

from __future__ import annotations

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import PCT, Chart, draw, empty, facet, guard, notes, num, pct, titled
from analysis.charts._data import THOUGHTS, Runs, rows, with_panel
from analysis.families import CONTROL, spearman_p
from warehouse.handle import Run

HUB_COLOR, OTHER_COLOR = "#f58518", "#4c78a8"


def _head_effects_vs_composite(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Each ablated head's failure rate against its descriptive composite, a panel per method and step
    scope (and run), each panel's Spearman rho in the title (head_effects)."""
    title = "Head ablation vs descriptive composite"
    frame = rows(
        con,
        "SELECT run_id, layer, head, head_label, method, steps, n, failures, failure_rate, ci_low, ci_high, "
        "mean_logp_drop, composite, composite_rank, functional_type FROM head_effects WHERE {runs} "
        f"AND method <> '{CONTROL}' AND composite IS NOT NULL ORDER BY run_id, method, steps, layer, head",
        runs,
    )
    if frame.is_empty():
        return empty(
            title, "no ablated heads with a descriptive composite (heads family and baseline attention)"
        )
    frame = frame.with_columns(
        scope=pl.concat_str(
            pl.col("method"),
            pl.when(pl.col("steps") == "all").then(pl.lit("all steps")).otherwise(pl.col("steps")),
            separator=", ",
        )
    )
    frame, panels = with_panel(frame, runs, patch_column=None, extra="scope")
    lines = []
    for panel in panels:
        group = frame.filter(pl.col("panel") == panel)
        rho, p = spearman_p(
            group["failure_rate"].to_numpy().astype(float), group["composite"].to_numpy().astype(float)
        )
        label = panel or str(group["scope"][0])
        lines.append(
            f"{label}: Spearman rho = {rho:.2f} (p = {p:.2g}, {group.height} heads)"
            if rho is not None and p is not None
            else f"{label}: rho undefined ({group.height} heads, or every value alike)"
        )
    tooltip: list[str | alt.Tooltip] = [
        "run:N",
        "head_label:N",
        "scope:N",
        "n:Q",
        "failures:Q",
        pct("failure_rate", "failure rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        num("mean_logp_drop", "mean log p drop"),
        num("composite"),
        "composite_rank:Q",
        "functional_type:N",
    ]
    x = alt.X("composite:Q", title="descriptive composite (head_metrics)", scale=alt.Scale(domain=[0, 1]))
    base = alt.Chart().encode(x=x, tooltip=tooltip)
    points = base.mark_circle(size=70, opacity=0.85).encode(
        y=alt.Y("failure_rate:Q", title="failure rate when ablated", axis=PCT),
        color=alt.Color("layer:O", title="layer"),
    )
    err = base.mark_rule(color="#999").encode(y="ci_low:Q", y2="ci_high:Q")
    chart = alt.layer(err, points, data=guard(frame, title)).properties(width=300, height=240)
    return facet(chart, panels, 3).properties(
        title=titled(
            title,
            "one point per head: share of baseline-correct answers that flip when the head is ablated, "
            "against its composite of flow, hub and skip attention; lines: 95% Wilson interval",
            *lines,
            notes(runs),
        )
    )


def _edge_knockout(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Failure rate when attention to each thought is knocked out, with Wilson intervals, the run's
    descriptive hub highlighted; a panel per layer scope (and run) (edge_knockout)."""
    title = "Edge knockout by key thought"
    frame = rows(
        con,
        "SELECT run_id, layer, layers, thought, thought_name, n, failures, failure_rate, ci_low, ci_high, "
        "mean_logp_drop, incoming_norm, hub_thought, is_hub FROM edge_knockout WHERE {runs} "
        "AND method = 'knockout' ORDER BY run_id, layer NULLS FIRST, thought",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no edge-knockout rows in this run")
    frame = frame.with_columns(
        role=pl.when(pl.col("is_hub")).then(pl.lit("descriptive hub")).otherwise(pl.lit("other thought")),
        scope=pl.when(pl.col("layers") == "all")
        .then(pl.lit("every layer"))
        .otherwise(pl.concat_str(pl.lit("layer "), pl.col("layer").cast(pl.String))),
    )
    frame, panels = with_panel(frame, runs, patch_column=None, extra="scope", extra_sort="layer")
    hubs = frame.filter(pl.col("is_hub").fill_null(False))["thought_name"].unique().to_list()
    x = alt.X("thought_name:N", sort=THOUGHTS, title="key thought (attention to it removed)")
    tooltip: list[str | alt.Tooltip] = [
        "run:N",
        "scope:N",
        "thought_name:N",
        "role:N",
        "n:Q",
        "failures:Q",
        pct("failure_rate", "failure rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        num("mean_logp_drop", "mean log p drop"),
        num("incoming_norm", "incoming attention (per later thought)"),
    ]
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.85)
        .encode(
            x=x,
            y=alt.Y("failure_rate:Q", title="failure rate", axis=PCT),
            color=alt.Color(
                "role:N",
                title=None,
                scale=alt.Scale(domain=["descriptive hub", "other thought"], range=[HUB_COLOR, OTHER_COLOR]),
            ),
            tooltip=tooltip,
        )
    )
    err = alt.Chart().mark_rule(strokeWidth=1.5, color="#222").encode(x=x, y="ci_low:Q", y2="ci_high:Q")
    chart = alt.layer(bars, err, data=guard(frame, title)).properties(width=260, height=220)
    hub_line = (
        f"descriptive hub (most attention from later thoughts, hub_scores): {', '.join(sorted(hubs))}"
        if hubs
        else "no descriptive hub: the run captured no baseline attention"
    )
    return facet(chart, panels, 3).properties(
        title=titled(
            title,
            "share of baseline-correct answers that flip when attention from later thoughts and EOT to the "
            "thought is removed; lines: 95% Wilson interval",
            hub_line,
            notes(runs),
        )
    )


# --- the public face: Run handles in, an Altair chart out ---------------------------------------


def head_effects_vs_composite(run: Run, vs: Run | None = None) -> Chart:
    """Ablated heads' failure rate against their descriptive composite, rho in the title (head_effects)."""
    return draw(_head_effects_vs_composite, run, vs)


def edge_knockout(run: Run, vs: Run | None = None) -> Chart:
    """Edge-knockout failure rate per key thought, Wilson intervals, the hub highlighted (edge_knockout)."""
    return draw(_edge_knockout, run, vs)
