"""Charts of attention flow between thoughts: the top heads' and each layer's attention matrices, hubs,
flow and skips, and the head ranking (flow_matrix, flow_matrix_by_layer, head_metrics, hub_scores,
thought_flow)."""

from __future__ import annotations

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import (
    NO_ATTENTION,
    Chart,
    draw,
    empty,
    facet,
    guard,
    heat_text,
    notes,
    num,
    run_color,
    titled,
)
from analysis.charts._data import (
    KEYS,
    QUERIES,
    RUN_COLORS,
    THOUGHTS,
    Runs,
    rows,
    with_panel,
)
from analysis.hubs import NONE, head_table, hub_table
from warehouse.handle import Run

TOP_HEADS, TOP_RANKED = 6, 20  # heads whose matrices are drawn; heads in the ranking's bar chart
HEAD_TYPES = ["Sequential", "Hub", "Skip", "Multi-Purpose", NONE]
FLOW_KINDS = {
    "sequential": "previous thought A[Ti → Ti-1]",
    "self": "self A[Ti → Ti]",  # thought_flow.kind
    "skip": "skip A[T5 → T0..T2]",
}


CONTEXT_KEYS = ["Q", "BOT", "EOT"]  # keys outside the thoughts: the question (0.5-0.95 of a row), BOT, EOT


def _attention_matrix(
    frame: pl.DataFrame, panels: list[str], columns: int, title: alt.TitleParams, extra_tooltip: list
) -> alt.TopLevelMixin:
    """Query (T0..T5, EOT) x key (Q, BOT, T0..T5, EOT) heatmaps of mean attention, one per panel.

    Two colour scales: the context keys (Q, BOT, EOT) on 0-1, and the thought keys (T0..T5) on a scale of
    their own (0 to the largest thought cell), so the question's large share does not wash them out. Both
    are shared by every panel, so panels compare."""
    base = alt.Chart().encode(
        x=alt.X("src_name:N", sort=KEYS, title="key (attended to)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("dst_name:N", sort=QUERIES, title="query (attending)"),
    )
    tooltip = ["panel:N", "dst_name:N", "src_name:N", num("mean_weight", "mean attention"), *extra_tooltip]
    thought_cells = frame.filter(pl.col("src_name").is_in(THOUGHTS))["mean_weight"].drop_nulls()
    top = max(float(thought_cells.max()) if len(thought_cells) else 0.0, 0.01)
    keys = ", ".join(f"'{k}'" for k in CONTEXT_KEYS)
    context = base.transform_filter(f"indexof([{keys}], datum.src_name) >= 0")
    thoughts = base.transform_filter(f"indexof([{keys}], datum.src_name) < 0")
    context_rect = context.mark_rect().encode(
        color=alt.Color(
            "mean_weight:Q",
            title=["attention to", "Q, BOT, EOT"],
            scale=alt.Scale(scheme="greys", domain=[0, 1], type="sqrt"),
            legend=alt.Legend(orient="right", gradientLength=110),
        ),
        tooltip=tooltip,
    )
    thought_rect = thoughts.mark_rect().encode(
        fill=alt.Fill(
            "mean_weight:Q",
            title=["attention to", "T0..T5 (own scale)"],
            scale=alt.Scale(scheme="blues", domain=[0, top]),
            legend=alt.Legend(orient="right", gradientLength=110),
        ),
        tooltip=tooltip,
    )
    chart = alt.layer(
        context_rect,
        heat_text(context, "mean_weight", ".2f", 0.35, minimum=0.005),
        thought_rect,
        heat_text(thoughts, "mean_weight", ".2f", 0.55 * top, minimum=0.005),
        data=frame,
    ).properties(width=alt.Step(30), height=alt.Step(22))
    return facet(chart, panels, columns).properties(title=title)


def _top_head_matrices(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """The top-ranked heads' attention matrices over thoughts (flow_matrix, head_metrics)."""
    title = f"Attention matrices of the top {TOP_HEADS} heads"
    frame = rows(
        con,
        """
        SELECT f.run_id, f.layer, f.head, f.dst, f.dst_name, f.src, f.src_name, f.mean_weight, f.std_weight,
               f.n, h.rank, h.functional_type, h.composite
        FROM flow_matrix f JOIN head_metrics h USING (run_id, layer, head)
        WHERE f.{runs} AND h.rank <= ?""",
        runs,
        params=[TOP_HEADS],
    )
    if frame.is_empty():
        return empty(title, NO_ATTENTION)
    frame = frame.with_columns(
        head_label=pl.format("#{} L{} H{} · {}", "rank", "layer", "head", "functional_type")
    )
    frame, panels = with_panel(frame, runs, patch_column=None, extra="head_label", extra_sort="rank")
    return _attention_matrix(
        guard(frame, title),
        panels,
        3,
        titled(
            title,
            "mean baseline attention over problems; rows: the query position, columns: the key; Q = the "
            "question's tokens summed; grey: Q, BOT and EOT keys on 0-1, blue: thought keys on their own "
            "scale; heads ranked by head_metrics' composite score",
            notes(runs),
        ),
        ["rank:Q", "functional_type:N", num("std_weight", "std over problems"), "n:Q"],
    )


def _layer_matrices(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Thought-to-thought attention averaged over heads, one matrix per layer (flow_matrix_by_layer)."""
    title = "Attention matrices by layer (mean over heads)"
    frame = rows(
        con,
        "SELECT run_id, layer, dst, dst_name, src, src_name, mean_weight, min_head, max_head, heads "
        "FROM flow_matrix_by_layer WHERE {runs}",
        runs,
    )
    if frame.is_empty():
        return empty(title, NO_ATTENTION)
    frame = frame.with_columns(layer_label=pl.format("layer {}", "layer"))
    frame, panels = with_panel(frame, runs, patch_column=None, extra="layer_label", extra_sort="layer")
    columns = 3 if frame["layer"].n_unique() <= 6 else 4
    return _attention_matrix(
        guard(frame, title),
        panels,
        columns,
        titled(
            title,
            "mean baseline attention over problems and heads; rows: query, columns: key; Q = the question's "
            "tokens summed; grey: Q, BOT and EOT keys on 0-1, blue: thought keys on their own scale",
            notes(runs),
        ),
        [num("min_head", "lowest head"), num("max_head", "highest head"), "heads:Q"],
    )


def _hub_flow_skip(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Hub scores, previous-thought flow, self-attention and skips by layer (hub_scores, thought_flow)."""
    title = "Hubs, sequential flow, self-attention and skips"
    hub, findings = _hubs_with_intervals(con, runs)
    flow = rows(
        con,
        "SELECT run_id, kind, layer, dst, src, replace(pair, '->', '→') AS pair, mean_weight, min_head, "
        "max_head, heads FROM thought_flow WHERE {runs} AND kind IS NOT NULL AND layer IS NOT NULL "
        "ORDER BY dst, src",
        runs,
    )
    flow = flow.with_columns(kind=pl.col("kind").replace_strict(FLOW_KINDS, return_dtype=pl.String))
    if hub.is_empty() and flow.is_empty():
        return empty(title, NO_ATTENTION)
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    tip = [
        "run:N",
        "position_name:N",
        "later_thoughts:Q",
        num("incoming_norm", "per later thought"),
        num("incoming_norm_low", "95% interval, low"),
        num("incoming_norm_high", "95% interval, high"),
        num("incoming_raw", "column sum (raw)"),
        num("hub_ratio", "hub ratio"),
        num("hub_ratio_raw", "hub ratio (raw)"),
        "heads:Q",
    ]
    x = alt.X("position_name:N", sort=THOUGHTS, title="thought attended to", axis=alt.Axis(labelAngle=0))
    y = alt.Y("incoming_norm:Q", title="mean attention from each later thought")
    bars = alt.Chart(hub).mark_bar().encode(x=x, y=y, color=color, tooltip=tip, **offset)
    whiskers = (
        alt.Chart(hub)
        .mark_rule(color="#222", strokeWidth=1.5)
        .encode(x=x, y=alt.Y("incoming_norm_low:Q"), y2="incoming_norm_high:Q", tooltip=tip, **offset)
    )
    no_later = (  # T5's empty slot says why it is empty
        alt.Chart(hub.filter(pl.col("position") == 5).unique("position"))
        .mark_text(angle=270, align="left", dx=-4, fontSize=10, color="#777")
        .encode(x=x, y=alt.datum(0), text=alt.value("no later thought"))
    )
    norm = alt.layer(bars, whiskers, no_later).properties(
        width=250,
        height=180,
        title=titled(
            "incoming attention, normalized",
            "whiskers: 95% bootstrap interval over problems; T5 has no later thought, so no value",
            *findings,
        ),
    )
    raw = (
        alt.Chart(hub)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("incoming_raw:Q", title="column sum of the 6x6 matrix"),
            color=color,
            tooltip=tip,
            **offset,
        )
        .properties(
            width=250,
            height=180,
            title=titled(
                "incoming attention, raw column sum", "the research definition: favours early thoughts"
            ),
        )
    )
    panels = [alt.hconcat(norm, raw)]
    if not flow.is_empty():
        flow, flow_panels = with_panel(flow, runs, patch_column=None)
        top = max(flow["mean_weight"].max(), 0.05)
        heat = []
        for kind in sorted(flow["kind"].unique().to_list(), key=list(FLOW_KINDS.values()).index):
            part = flow.filter(pl.col("kind") == kind)
            pairs = part.sort("dst", "src")["pair"].unique(maintain_order=True).to_list()
            base = alt.Chart().encode(
                x=alt.X("pair:N", sort=pairs, title=None, axis=alt.Axis(labelAngle=-40)),
                y=alt.Y("layer:O", title="layer"),
            )
            rect = base.mark_rect().encode(
                color=alt.Color(
                    "mean_weight:Q",
                    title="attention (head mean)",
                    scale=alt.Scale(scheme="blues", domain=[0, top]),
                ),
                tooltip=[
                    "run:N",
                    "kind:N",
                    "layer:O",
                    "pair:N",
                    num("mean_weight", "mean over heads"),
                    num("min_head", "lowest head"),
                    num("max_head", "highest head"),
                    "heads:Q",
                ],
            )
            text = heat_text(base, "mean_weight", ".2f", top * 0.55)
            layer = alt.layer(rect, text, data=part).properties(
                width=alt.Step(32 if runs.pair else 40), height=alt.Step(20)
            )
            heat.append(facet(layer, flow_panels).properties(title=kind))
        panels.append(alt.hconcat(*heat))
    return (
        alt.vconcat(*panels)
        .resolve_scale(color="independent")
        .properties(
            title=titled(
                title, "baseline attention averaged over problems, heads and (top row) layers", notes(runs)
            )
        )
    )


def _hubs_with_intervals(con: duckdb.DuckDBPyConnection, runs: Runs) -> tuple[pl.DataFrame, list[str]]:
    """hub_scores T0..T5 of the runs with the bootstrap interval of incoming_norm, and each run's hub
    finding (ratio, interval, permutation p), as `stats` computes them (analysis/hubs.py)."""
    from analysis.stats import N_BOOT, N_PERM, SEED  # here: analysis.stats is heavier than a chart needs

    frames, findings = [], []
    for run_id in runs.ids:
        table, hub = hub_table(con, run_id, N_BOOT, N_PERM, SEED)
        frames.append(table.filter(pl.col("position").is_between(0, 5)))
        if hub:
            findings.append((f"{runs.letters[run_id]}: " if runs.pair else "") + hub["finding"])
    keep = [
        "run_id",
        "position",
        "position_name",
        "later_thoughts",
        "incoming_raw",
        "incoming_norm",
        "incoming_norm_low",
        "incoming_norm_high",
        "hub_ratio",
        "hub_ratio_raw",
        "heads",
    ]
    hub = pl.concat([f.select(keep) for f in frames], how="vertical_relaxed")
    return hub.with_columns(
        run=pl.col("run_id").replace_strict(runs.labels, default=None, return_dtype=pl.String)
    ), findings


def _ranked_heads(con: duckdb.DuckDBPyConnection, runs: Runs) -> tuple[pl.DataFrame, list[str]]:
    """Every head of the runs with bootstrap intervals and the supported functional type (analysis/hubs.py,
    as `stats` computes them), and a line per run counting the typed heads."""
    from analysis.stats import N_BOOT, SEED  # here: analysis.stats is heavier than a chart needs

    frames, lines = [], []
    for run_id in runs.ids:
        table, summary = head_table(con, run_id, N_BOOT, SEED)
        frames.append(table)
        if summary:
            typed = ", ".join(f"{n} {t}" for t, n in summary["typed"].items()) or "none"
            lines.append(
                (f"{runs.letters[run_id]}: " if runs.pair else "")
                + f"heads with a supported type: {typed} (of {summary['heads']})"
            )
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.with_columns(
        run=pl.col("run_id").replace_strict(runs.labels, default=None, return_dtype=pl.String)
    ), lines


def _head_ranking(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Heads ranked by the composite of flow, hub and skip scores, and all heads by layer (head_metrics)."""
    title = "Head ranking"
    frame, typed = _ranked_heads(con, runs)
    if frame.is_empty():
        return empty(title, NO_ATTENTION)
    frame = frame.with_columns(head_label=pl.format("L{} H{}", "layer", "head"))
    frame, panels = with_panel(frame, runs, patch_column=None)
    tip = [
        "run:N",
        "rank:Q",
        "layer:O",
        "head:O",
        "functional_type:N",
        alt.Tooltip("functional_type_view:N", title="type by top score (unchecked)"),
        num("composite"),
        num("composite_low", "composite, 95% low"),
        num("composite_high", "composite, 95% high"),
        num("flow"),
        num("flow_low", "flow, 95% low"),
        num("flow_high", "flow, 95% high"),
        num("p_flow", "flow above median head: p (Holm)", fmt=".2g"),
        num("hub", fmt=".4f"),
        num("p_hub", "hub above median head: p (Holm)", fmt=".2g"),
        num("skip"),
        num("p_skip", "skip above median head: p (Holm)", fmt=".2g"),
        num("self_attn", "self"),
        num("flow_scaled"),
        num("hub_scaled"),
        num("skip_scaled"),
    ]
    type_color = alt.Color(
        "functional_type:N",
        title="functional type",
        scale=alt.Scale(domain=HEAD_TYPES, range=["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#c7c7c7"]),
    )
    ranked = alt.Chart().encode(y=alt.Y("head_label:N", sort=alt.EncodingSortField("rank"), title=None))
    bars = alt.layer(
        ranked.mark_bar().encode(
            x=alt.X("composite:Q", title="composite score", scale=alt.Scale(domain=[0, 1])),
            color=type_color,
            tooltip=tip,
        ),
        ranked.mark_rule(color="#222").encode(x="composite_low:Q", x2="composite_high:Q", tooltip=tip),
        data=guard(frame.filter(pl.col("rank") <= TOP_RANKED), title),
    ).properties(width=260, height=alt.Step(14))
    bars = facet(bars.properties(title=f"top {TOP_RANKED} heads"), panels)
    if len(panels) > 1:  # each run's own ranking order
        bars = bars.resolve_scale(y="independent")
    grid = (
        alt.Chart(guard(frame, title))
        .mark_rect()
        .encode(
            x=alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("layer:O", title="layer"),
            color=alt.Color(
                "composite:Q", title="composite", scale=alt.Scale(scheme="greens", domain=[0, 1])
            ),
            tooltip=tip,
        )
        .properties(width=alt.Step(22), height=alt.Step(22))
    )
    grid = facet(grid.properties(title="every head"), panels)
    return (
        alt.hconcat(bars, grid)
        .resolve_scale(color="independent")
        .properties(
            title=titled(
                title,
                "composite = 0.4 flow + 0.4 hub + 0.2 skip, each min-max scaled over the run's heads; "
                "flow: previous-thought attention, hub: variance of normalized incoming attention, "
                "skip: T5 → T0..T2; whiskers: 95% bootstrap interval over problems",
                "a type only where the scores it names exceed the median head's (one-sided z-test, bootstrap "
                "standard error, Holm over all heads and scores, p < 0.05); else 'none'",
                *typed,
                notes(runs),
            )
        )
    )


# --- the public face: Run handles in, an Altair chart out ---------------------------------------


def top_head_matrices(run: Run, vs: Run | None = None) -> Chart:
    """The top-ranked heads' attention matrices over thoughts (flow_matrix, head_metrics)."""
    return draw(_top_head_matrices, run, vs)


def layer_matrices(run: Run, vs: Run | None = None) -> Chart:
    """Thought-to-thought attention averaged over heads, one matrix per layer (flow_matrix_by_layer)."""
    return draw(_layer_matrices, run, vs)


def hub_flow_skip(run: Run, vs: Run | None = None) -> Chart:
    """Hub scores, previous-thought flow, self-attention and skips by layer (hub_scores, thought_flow)."""
    return draw(_hub_flow_skip, run, vs)


def head_ranking(run: Run, vs: Run | None = None) -> Chart:
    """Heads ranked by the composite of flow, hub and skip scores, and all heads by layer (head_metrics)."""
    return draw(_head_ranking, run, vs)
