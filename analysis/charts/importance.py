"""Charts of what corrupting a thought does: failure rates by thought, by thought x corruption, per
problem, and the corruptions' KL and attention disruption (token_importance, importance_matrix,
int_problem_importance, method_comparison)."""

from __future__ import annotations

from typing import Any

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import (
    PCT,
    Chart,
    draw,
    empty,
    facet,
    guard,
    heat_text,
    notes,
    num,
    pct,
    run_color,
    titled,
)
from analysis.charts._data import (
    RUN_COLORS,
    STRATA,
    THOUGHTS,
    Runs,
    condition_labels,
    rows,
    with_panel,
)
from warehouse.handle import Run

MAX_PROBLEM_CELLS = 4200  # problem x thought cells the per-problem heatmap shows at most (evenly spread)


def _importance_by_thought(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Failure rate after corrupting each thought, with its 95% Wilson interval (token_importance)."""
    title = "Importance by thought"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, thought, thought_name, problems, n, failures, failure_rate, "
        "ci_low, ci_high, mean_kl, mean_logp_drop FROM token_importance WHERE {runs}",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no corrupted trials on baseline-correct problems")
    frame, panels = with_panel(frame, runs, by_run=False)
    x = alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0))
    tooltip = [
        "run:N",
        "patch_layer:O",
        "thought_name:N",
        "problems:Q",
        "n:Q",
        "failures:Q",
        pct("failure_rate", "failure rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        num("mean_kl", "mean KL"),
        num("mean_logp_drop", "mean log p drop"),
    ]
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.85)
        .encode(
            x=x,
            y=alt.Y("failure_rate:Q", title="failure rate", axis=PCT),
            color=run_color(runs) if runs.pair else alt.value(RUN_COLORS[0]),
            tooltip=tooltip,
            **offset,
        )
    )
    err = (
        alt.Chart()
        .mark_rule(strokeWidth=1.5, color="#222")
        .encode(x=x, y="ci_low:Q", y2="ci_high:Q", tooltip=tooltip, **offset)
    )
    chart = alt.layer(bars, err, data=guard(frame, title)).properties(
        width=340 if runs.pair else 300, height=240
    )
    return facet(chart, panels, 3).properties(
        title=titled(
            title,
            "share of corrupted trials that flipped a baseline-correct answer; corruptions pooled, clean "
            "control left out; lines: 95% Wilson interval",
            notes(runs),
        )
    )


def _thought_method_heatmap(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Failure rate for every thought x corruption (importance_matrix)."""
    title = "Importance by thought and corruption"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, thought_name, method, sigma, n, failures, failure_rate, "
        "ci_low, ci_high, mean_kl FROM importance_matrix WHERE {runs}",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no corrupted trials on baseline-correct problems")
    frame, conditions = condition_labels(frame)
    frame, panels = with_panel(frame, runs)
    top = max(frame["failure_rate"].drop_nulls().max() or 0.0, 0.05)
    base = alt.Chart().encode(
        x=alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("condition_label:N", sort=conditions, title="corruption"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "failure_rate:Q",
            title="failure rate",
            legend=alt.Legend(format="%"),
            scale=alt.Scale(scheme="reds", domain=[0, top]),
        ),
        tooltip=[
            "run:N",
            "patch_layer:O",
            "thought_name:N",
            "condition_label:N",
            "n:Q",
            "failures:Q",
            pct("failure_rate", "failure rate"),
            pct("ci_low", "95% low"),
            pct("ci_high", "95% high"),
            num("mean_kl", "mean KL"),
        ],
    )
    text = heat_text(base, "failure_rate", ".0%", top * 0.55)
    chart = alt.layer(rect, text, data=guard(frame, title)).properties(
        width=alt.Step(46), height=alt.Step(26)
    )
    return facet(chart, panels).properties(
        title=titled(
            title,
            "failure rate among baseline-correct trials; hover a cell for n and the 95% Wilson interval",
            notes(runs),
        )
    )


def _problem_thought_heatmap(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Per problem and thought: share of corruptions that flipped it (int_problem_importance,
    stg_problems)."""
    title = "Importance per problem and thought"
    groups = len(runs.ids) * max(len(v) for v in runs.patch_layers.values()) or 1
    cap = max(MAX_PROBLEM_CELLS // (len(THOUGHTS) * groups), 1)
    frame = rows(
        con,
        """
        WITH p AS (
            SELECT i.run_id, i.patch_layer, i.problem_id, i.thought, i.trials, i.failures, i.importance,
                   s.n_steps, stratum(s.n_steps) AS stratum,
                   dense_rank() OVER (
                       PARTITION BY i.run_id, i.patch_layer ORDER BY s.n_steps, i.problem_id
                   ) AS k
            FROM int_problem_importance i LEFT JOIN stg_problems s USING (problem_id)
            WHERE i.{runs}
        ), q AS (SELECT *, max(k) OVER (PARTITION BY run_id, patch_layer) AS total FROM p)
        SELECT *, 'T' || thought AS thought_name, left(problem_id, 8) AS problem
        FROM q WHERE (k - 1) % greatest(1, ceil(total / ?))::BIGINT = 0
        """,
        runs,
        params=[cap],
    )
    if frame.is_empty():
        return empty(title, "no baseline-correct problems with corrupted trials")
    shown = frame.select(pl.col("problem_id").n_unique()).item()
    total = int(frame["total"].max())
    frame, panels = with_panel(frame, runs)
    frame = frame.with_columns(stratum_label=pl.format("{} steps", pl.col("stratum").fill_null("?")))
    strata = [f"{s} steps" for s in STRATA] + ["? steps"]
    many = frame.select(pl.col("problem_id").n_unique()).item() > 50
    present = [s for s in strata if s in set(frame["stratum_label"])]
    order = (
        frame.sort("n_steps", "problem_id", nulls_last=True)["problem"].unique(maintain_order=True).to_list()
    )

    def block(stratum: str, last: bool) -> Any:
        """One stratum's problems; the thought axis only under the last block."""
        x_axis = alt.Axis(labelAngle=0) if last else None
        cell = (
            alt.Chart(guard(frame, title))
            .mark_rect()
            .encode(
                x=alt.X(
                    "thought_name:N", sort=THOUGHTS, title="corrupted thought" if last else None, axis=x_axis
                ),
                y=alt.Y(
                    "problem:N",
                    sort=order,
                    title=None,
                    axis=alt.Axis(labels=not many, ticks=not many, labelFontSize=9),
                ),
                color=alt.Color(
                    "importance:Q",
                    title="share flipped",
                    legend=alt.Legend(format="%"),
                    scale=alt.Scale(scheme="reds", domain=[0, 1]),
                ),
                tooltip=[
                    "run:N",
                    "patch_layer:O",
                    "problem_id:N",
                    "n_steps:Q",
                    "thought_name:N",
                    "trials:Q",
                    "failures:Q",
                    pct("importance", "share flipped"),
                ],
            )
            .transform_filter(alt.datum.stratum_label == stratum)
        )
        cell = cell.properties(width=alt.Step(40), height=alt.Step(5 if many else 14))
        return facet(cell, panels).properties(title=alt.TitleParams(stratum, fontSize=12))

    # one block per stratum (a row facet with independent y scales trips a Vega-Lite bug)
    blocks = [block(s, i == len(present) - 1) for i, s in enumerate(present)]
    chart = alt.vconcat(*blocks, spacing=8)
    sample = f"{shown} of {total} problems shown, evenly spread" if shown < total else ""
    return chart.properties(
        title=titled(
            title,
            "baseline-correct problems grouped by solution steps; each cell: share of the thought's "
            "corruptions that flipped the answer",
            sample,
            notes(runs),
        )
    )


def _method_effects(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Failure rate, KL and attention disruption for each corruption (method_comparison)."""
    title = "Failure rate, KL and disruption by corruption"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, method, sigma, n, failures, failure_rate, ci_low, ci_high, "
        "n_all, mean_kl, mean_js, mean_entropy_change, mean_kl_first, mean_logp_drop, mean_disruption "
        "FROM method_comparison WHERE {runs}",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no corrupted trials in this run")
    frame, conditions = condition_labels(frame)
    frame, panels = with_panel(frame, runs, by_run=False)
    offset = {"yOffset": alt.YOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    y = alt.Y("condition_label:N", sort=conditions, title="corruption")
    tip = [
        "run:N",
        "patch_layer:O",
        "condition_label:N",
        "n:Q",
        "failures:Q",
        pct("failure_rate", "failure rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        "n_all:Q",
        num("mean_kl", "mean KL (answer)"),
        num("mean_js", "mean JS (answer)"),
        num("mean_entropy_change", "mean entropy change (answer)"),
        num("mean_kl_first", "mean KL (EOT, template token)"),
        num("mean_logp_drop", "mean log p drop"),
        num("mean_disruption", "mean disruption"),
    ]

    def bars(field: str, axis_title: str, fmt: str | None = None, interval: bool = False) -> Any:
        axis = alt.Axis(format=fmt, tickCount=5) if fmt else alt.Axis(tickCount=5)
        bar = (
            alt.Chart()
            .mark_bar(opacity=0.85)
            .encode(
                y=y, x=alt.X(f"{field}:Q", title=axis_title, axis=axis), color=color, tooltip=tip, **offset
            )
        )
        layers = [bar]
        if interval:
            layers.append(
                alt.Chart().mark_rule(color="#222").encode(y=y, x="ci_low:Q", x2="ci_high:Q", **offset)
            )
        chart = alt.layer(*layers, data=frame).properties(width=230, height=alt.Step(12 if runs.pair else 20))
        return facet(chart, panels, 1)

    chart = alt.hconcat(
        bars("failure_rate", "failure rate (95% Wilson)", "%", True),
        bars("mean_kl", "mean KL at the answer (nats)"),
        bars("mean_disruption", "mean EOT attention disruption"),
    )
    return chart.properties(
        title=titled(
            title,
            "KL: baseline vs corrupted next-token distribution at the answer number, every corrupted trial; "
            "disruption: L2 change of the last layer's EOT attention",
            notes(runs),
        )
    )


# --- the public face: Run handles in, an Altair chart out ---------------------------------------


def importance_by_thought(run: Run, vs: Run | None = None) -> Chart:
    """Failure rate after corrupting each thought, with its 95% Wilson interval (token_importance)."""
    return draw(_importance_by_thought, run, vs)


def thought_method_heatmap(run: Run, vs: Run | None = None) -> Chart:
    """Failure rate for every thought x corruption (importance_matrix)."""
    return draw(_thought_method_heatmap, run, vs)


def problem_thought_heatmap(run: Run, vs: Run | None = None) -> Chart:
    """Per problem and thought: share of corruptions that flipped it (int_problem_importance,
    stg_problems)."""
    return draw(_problem_thought_heatmap, run, vs)


def method_effects(run: Run, vs: Run | None = None) -> Chart:
    """Failure rate, KL and attention disruption for each corruption (method_comparison)."""
    return draw(_method_effects, run, vs)
