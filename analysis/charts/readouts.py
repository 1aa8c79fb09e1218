"""Charts of the readouts of a run's baseline (schema 7), each drawn only for runs that have the readout:
logit-lens decoding of each thought to its step's value (thought_decoding), the question tokens each thought
reads (question_token_routing) and whether they are its step's operands (thought_operand_reading), and
linear probes (probe_summary). Every number is a view's row; the defaults (top-k, match, m, layer) are
named in each chart's subtitle."""

from __future__ import annotations

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import PCT, Chart, draw, empty, facet, guard, heat_text, num, pct, titled
from analysis.charts._data import QUERIES, THOUGHTS, Runs, rows, with_panel
from analysis.readouts import DEFAULT_MATCH, OPERAND_M, TOP_TOKENS
from warehouse.handle import Run

LAYER_TITLE = "layer"
LAYER_NOTE = "layer -1: the vector fed in at the position; 0..L-1: each block's output"
TARGET_ORDER = ("value", "operation", "n_steps")
TARGET_TITLES = {
    "value": "value of the step (ridge, R^2)",
    "operation": "operation of the step (accuracy)",
    "n_steps": "number of steps (accuracy)",
}
METRIC_TITLES = {"r2": "R^2", "accuracy": "accuracy"}
ABOVE_COLOR = "#d62728"
M_COLORS = {1: "#4c78a8", 3: "#f58518"}


def _decoding_heatmap(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Thought x layer: how often Tk decodes to its step's value (top-k stored, exact match), the control
    rate and the interval in the tooltip (thought_decoding)."""
    title = "Decoding: thoughts against their step's value"
    frame = rows(
        con,
        "SELECT run_id, layer, position, position_name, k, n, hits, rate, ci_low, ci_high, control_n, "
        "control_rate, lift FROM thought_decoding d WHERE {runs} AND target = 'step' "
        f"AND match = '{DEFAULT_MATCH}' "
        "AND k = (SELECT max(k) FROM thought_decoding x WHERE x.run_id = d.run_id) "
        "ORDER BY run_id, position, layer",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no thought has a step value to decode (no problem with annotated steps)")
    frame, panels = with_panel(frame, runs, patch_column=None)
    ks = ", ".join(str(k) for k in sorted(frame["k"].unique().to_list()))
    tooltip: list[str | alt.Tooltip] = [
        "run:N",
        "position_name:N",
        "layer:O",
        "k:Q",
        "n:Q",
        "hits:Q",
        pct("rate", "rate (own step's value)"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        "control_n:Q",
        pct("control_rate", "control rate (another problem's value)"),
        pct("lift", "lift (rate - control)"),
    ]
    base = alt.Chart().encode(
        x=alt.X("layer:O", title=LAYER_TITLE),
        y=alt.Y("position_name:N", sort=THOUGHTS, title="thought"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "rate:Q",
            title="rate",
            scale=alt.Scale(domain=[0, 1], scheme="blues"),
            legend=alt.Legend(format="%"),
        ),
        tooltip=tooltip,
    )
    chart = alt.layer(cells, heat_text(base, "rate", ".0%", 0.6), data=guard(frame, title)).properties(
        width=alt.Step(34), height=alt.Step(26)
    )
    return facet(chart, panels).properties(
        title=titled(
            title,
            f"share of problems where the logit lens of Tk at each layer has the value of step k+1 among its "
            f"top-{ks} tokens ({DEFAULT_MATCH} match: the token read as a number equals the value)",
            "tooltip: the 95% Wilson interval, and the control: the same test against another problem's "
            "value",
            LAYER_NOTE,
        )
    )


def _probe_heatmap(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Position x layer of each probe's out-of-fold score, one row of panels per target (a panel per step),
    chance, the shuffled baseline and Holm's p in the tooltip; * marks p_holm < 0.05 (probe_summary)."""
    title = "Linear probes by position and layer"
    frame = rows(
        con,
        "SELECT run_id, target, step, position, position_name, layer, metric, score, ci_low, ci_high, "
        "chance, lift, shuffled, shuffled_high, p_value, p_holm, above_chance, n, n_tests FROM probe_summary "
        "WHERE {runs} ORDER BY run_id, target, step NULLS FIRST, position, layer",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no probe results for this run (python cli.py probe)")
    frame = frame.with_columns(
        step_label=pl.when(pl.col("step").is_null())
        .then(pl.lit("all steps"))
        .otherwise(pl.format("step {}", pl.col("step"))),
        step_order=pl.col("step").fill_null(0),
        mark=pl.when(pl.col("above_chance").fill_null(False)).then(pl.lit("*")).otherwise(pl.lit("")),
    )
    tooltip: list[str | alt.Tooltip] = [
        "run:N",
        "target:N",
        "step_label:N",
        "position_name:N",
        "layer:O",
        "metric:N",
        num("score"),
        num("ci_low", "95% low"),
        num("ci_high", "95% high"),
        num("chance"),
        num("shuffled", "shuffled labels (mean)"),
        num("shuffled_high", "shuffled labels (95th pct)"),
        num("p_value", "permutation p", ".3g"),
        num("p_holm", "Holm-adjusted p", ".3g"),
        "n:Q",
    ]
    panels_by_target = []
    for target in [t for t in TARGET_ORDER if t in frame["target"].to_list()] + sorted(
        set(frame["target"].to_list()) - set(TARGET_ORDER)
    ):
        group, panels = with_panel(
            frame.filter(pl.col("target") == target),
            runs,
            patch_column=None,
            extra="step_label",
            extra_sort="step_order",
        )
        base = alt.Chart().encode(
            x=alt.X("layer:O", title=LAYER_TITLE),
            y=alt.Y("position_name:N", sort=QUERIES, title="position"),
        )
        metric = METRIC_TITLES.get(group["metric"][0], "score")
        cells = base.mark_rect().encode(
            color=alt.Color("score:Q", title=metric, scale=alt.Scale(scheme="viridis")),
            tooltip=tooltip,
        )
        stars = (
            base.mark_rect(fillOpacity=0, stroke=ABOVE_COLOR, strokeWidth=2.5)
            .encode(tooltip=tooltip)
            .transform_filter("datum.mark == '*'")
        )
        layered = alt.layer(cells, stars, data=guard(group, title)).properties(
            width=alt.Step(22), height=alt.Step(20)
        )
        panels_by_target.append(facet(layered, panels, 4).properties(title=TARGET_TITLES.get(target, target)))
    n_tests = frame["n_tests"].to_list()[0]  # one probe set per run: the same for every row
    return (
        alt.vconcat(*panels_by_target)
        .resolve_scale(color="independent")
        .properties(
            title=titled(
                title,
                "out-of-fold score of a linear probe from the state at each position and layer (folds "
                "grouped by problem)",
                f"red outline: above chance after Holm's adjustment over the {n_tests} probes of the set "
                "(p_holm < 0.05); tooltip: the interval, chance and the same probe on shuffled labels",
                "a probe shows the information is linearly present, not that the model uses it",
                LAYER_NOTE,
            )
        )
    )


def _question_tokens(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Per thought (and EOT), its top question tokens by mean attention at the run's last layer
    (question_token_routing)."""
    title = "Question tokens each thought reads"
    frame = rows(
        con,
        "SELECT run_id, layer, dst, dst_name, token, mean_weight, share_of_question, n_problems, "
        "n_occurrences, rank, is_number FROM question_token_routing q WHERE {runs} "
        "AND layer = (SELECT max(layer) FROM question_token_routing x WHERE x.run_id = q.run_id) "
        f"AND rank <= {TOP_TOKENS} ORDER BY run_id, dst, rank, token",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no attention to question tokens for this run (run --attention tokens)")
    frame = frame.with_columns(
        label=pl.when(pl.col("token") == "").then(pl.lit("(space)")).otherwise(pl.col("token")),
        kind=pl.when(pl.col("is_number")).then(pl.lit("part of a number")).otherwise(pl.lit("other token")),
    )
    frame, panels = with_panel(frame, runs, patch_column=None, extra="dst_name", extra_sort="dst")
    layers = ", ".join(str(x) for x in sorted(frame["layer"].unique().to_list()))
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("mean_weight:Q", title="mean attention weight"),
            y=alt.Y("label:N", sort="-x", title=None),
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(domain=["part of a number", "other token"], range=["#f58518", "#4c78a8"]),
            ),
            tooltip=[
                "run:N",
                "dst_name:N",
                "layer:O",
                "rank:Q",
                "token:N",
                num("mean_weight", "mean weight"),
                pct("share_of_question", "share of the question's attention"),
                "n_problems:Q",
                "n_occurrences:Q",
            ],
        )
    )
    chart = alt.layer(bars, data=guard(frame, title)).properties(width=170, height=alt.Step(14))
    out = facet(chart, panels, 4)
    if len(panels) > 1:
        out = out.resolve_scale(y="independent")
    return out.properties(
        title=titled(
            title,
            f"the {TOP_TOKENS} question tokens each query attends to most at layer {layers} (the last): "
            "head-averaged baseline attention, averaged over the problems that have the token",
            "ties share a rank; tokens are grouped by their lowercased text; the tooltip gives how many "
            "problems have it",
        )
    )


def _operand_reading(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Per thought, by layer: how often one of its m most attended question tokens is an operand of its
    step, with the Wilson interval, against the rate m random tokens give (thought_operand_reading)."""
    title = "Do thoughts read their step's operands?"
    frame = rows(
        con,
        "SELECT run_id, layer, dst, dst_name, m, n, hits, rate, ci_low, ci_high, chance, lift "
        "FROM thought_operand_reading WHERE {runs} AND operands_of = 'step' ORDER BY run_id, dst, m, layer",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no problem has a step whose operands are written in the question")
    frame = frame.with_columns(top=pl.format("top-{}", pl.col("m")))
    frame, panels = with_panel(frame, runs, patch_column=None, extra="dst_name", extra_sort="dst")
    ms = sorted(frame["m"].unique().to_list())
    color = alt.Color(
        "top:N",
        title="tokens read",
        scale=alt.Scale(domain=[f"top-{m}" for m in ms], range=[M_COLORS.get(m, "#54a24b") for m in ms]),
    )
    tooltip: list[str | alt.Tooltip] = [
        "run:N",
        "dst_name:N",
        "layer:O",
        "m:Q",
        "n:Q",
        "hits:Q",
        pct("rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        pct("chance", "chance (m random tokens)"),
        pct("lift", "lift (rate - chance)"),
    ]
    x = alt.X("layer:O", title="layer")
    base = alt.Chart().encode(x=x, color=color)
    line = base.mark_line(point=True).encode(y=alt.Y("rate:Q", title="hit rate", axis=PCT), tooltip=tooltip)
    err = base.mark_rule(opacity=0.6).encode(y="ci_low:Q", y2="ci_high:Q", tooltip=tooltip)
    chance = base.mark_line(strokeDash=[4, 3], opacity=0.8).encode(y="chance:Q", tooltip=tooltip)
    chart = alt.layer(err, line, chance, data=guard(frame, title)).properties(width=200, height=160)
    return facet(chart, panels, 4).properties(
        title=titled(
            title,
            "share of problems where one of thought Tk's m most attended question tokens is part of an "
            "operand of its step (step k+1, as written in the question)",
            "vertical lines: 95% Wilson interval; dashed: chance (m tokens drawn at random); the findings "
            f"use top-{OPERAND_M}",
        )
    )


# --- the public face: Run handles in, an Altair chart out ---------------------------------------


def decoding_heatmap(run: Run, vs: Run | None = None) -> Chart:
    """Thought x layer rate of decoding to the step's value, control in the tooltip (thought_decoding)."""
    return draw(_decoding_heatmap, run, vs)


def probe_heatmap(run: Run, vs: Run | None = None) -> Chart:
    """Position x layer probe scores per target and step, p_holm < 0.05 marked (probe_summary)."""
    return draw(_probe_heatmap, run, vs)


def question_tokens(run: Run, vs: Run | None = None) -> Chart:
    """Each thought's top question tokens at the last layer (question_token_routing)."""
    return draw(_question_tokens, run, vs)


def operand_reading(run: Run, vs: Run | None = None) -> Chart:
    """Operand reading rate vs chance by layer, per thought (thought_operand_reading)."""
    return draw(_operand_reading, run, vs)
