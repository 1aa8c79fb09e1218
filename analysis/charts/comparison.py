"""Charts of two runs: A against B on their shared problems (run_comparison_by_thought,
run_comparison_by_condition; the paired B - A interval from analysis.compare) and each run's own summary
side by side (model_comparison, baseline_accuracy)."""

from __future__ import annotations

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
    notes,
    num,
    pct,
    run_color,
    titled,
)
from analysis.charts._data import (
    RUN_COLORS,
    THOUGHTS,
    Runs,
    condition_label,
    rows,
)
from analysis.compare import thought_differences
from warehouse.handle import Run


def _run_comparison(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Run A against run B on their shared problems, per thought and per corruption
    (run_comparison_by_thought, run_comparison_by_condition)."""
    title = "Run A vs run B on shared problems"
    if not runs.pair:
        return empty(title, "pass --vs RUN to compare two runs")
    a, b = runs.ids
    pair = {"a": a, "b": b}
    # each run's side of run_comparison_by_thought as rows of their own (a reshape: the view did the sums)
    per_thought = con.sql(
        """
        SELECT run_a AS run_id, patch_layer_a, patch_layer_b, thought, thought_name, problems, n_a AS n,
               failures_a AS failures, failure_rate_a AS failure_rate, ci_low_a AS ci_low,
               ci_high_a AS ci_high, mean_kl_a AS kl
        FROM run_comparison_by_thought WHERE run_a = $a AND run_b = $b
        UNION ALL
        SELECT run_b, patch_layer_a, patch_layer_b, thought, thought_name, problems, n_b, failures_b,
               failure_rate_b, ci_low_b, ci_high_b, mean_kl_b
        FROM run_comparison_by_thought WHERE run_a = $a AND run_b = $b""",
        params=pair,
    ).pl()
    if per_thought.is_empty():
        return empty(title, "the two runs share no problems")
    frame = con.sql(
        """
        SELECT patch_layer_a, patch_layer_b, thought, thought_name, method, sigma, condition, problems, n_a,
               failures_a, failure_rate_a AS rate_a, n_b, failures_b, failure_rate_b AS rate_b,
               same_convention
        FROM run_comparison_by_condition
        WHERE run_a = $a AND run_b = $b AND method <> 'clean'""",
        params=pair,
    ).pl()
    keys = ["patch_layer_a", "patch_layer_b"]
    per_thought = per_thought.with_columns(
        run=pl.col("run_id").replace_strict(runs.labels, return_dtype=pl.String),
        panel=pl.format("A L{} / B L{}", "patch_layer_a", "patch_layer_b"),
    )
    panels = per_thought.sort(keys)["panel"].unique(maintain_order=True).to_list()
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)}
    x = alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0))
    tip = [
        "run:N",
        "panel:N",
        "thought_name:N",
        "problems:Q",
        "n:Q",
        "failures:Q",
        pct("failure_rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        num("kl", "mean KL (answer)"),
    ]
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.85)
        .encode(
            x=x,
            y=alt.Y("failure_rate:Q", title="failure rate (95% Wilson)", axis=PCT),
            color=run_color(runs),
            tooltip=tip,
            **offset,
        )
    )
    err = alt.Chart().mark_rule(color="#222").encode(x=x, y="ci_low:Q", y2="ci_high:Q", **offset)
    rates = facet(
        alt.layer(bars, err, data=guard(per_thought, title)).properties(width=300, height=220), panels
    ).properties(title="each run's own failure rate")
    differences = _paired_differences(con, runs, title)
    kl = facet(
        alt.Chart(per_thought)
        .mark_bar(opacity=0.85)
        .encode(
            x=x,
            y=alt.Y("kl:Q", title="mean KL at the answer (nats)"),
            color=run_color(runs),
            tooltip=tip,
            **offset,
        )
        .properties(width=300, height=220),
        panels,
    ).properties(title="mean KL at the answer")
    scatter_frame = frame.with_columns(
        condition=pl.Series(
            [condition_label(m, s) for m, s in zip(frame["method"], frame["sigma"], strict=True)],
            dtype=pl.String,
        )
    )
    diagonal = (
        alt.Chart(pl.DataFrame({"v": [0.0, 1.0]}))
        .mark_line(color="#aaa", strokeDash=[4, 4])
        .encode(x="v:Q", y="v:Q")
    )
    points = (
        alt.Chart(guard(scatter_frame, title))
        .mark_point(filled=True, size=50, opacity=0.8)
        .encode(
            x=alt.X("rate_a:Q", title="failure rate, run A", axis=PCT, scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("rate_b:Q", title="failure rate, run B", axis=PCT, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "thought_name:N", sort=THOUGHTS, title="thought", scale=alt.Scale(scheme="viridis")
            ),
            shape=alt.Shape("method:N", title="method"),
            tooltip=[
                "thought_name:N",
                "condition:N",
                "patch_layer_a:O",
                "patch_layer_b:O",
                "problems:Q",
                "n_a:Q",
                "failures_a:Q",
                pct("rate_a", "rate A"),
                "n_b:Q",
                "failures_b:Q",
                pct("rate_b", "rate B"),
            ],
        )
    )
    scatter = (diagonal + points).properties(width=240, height=240, title="every thought x corruption")
    note = "" if frame["same_convention"].all() else "the runs use different position conventions (legacy)"
    return (
        alt.vconcat(
            alt.hconcat(differences, rates).resolve_scale(color="independent"),
            alt.hconcat(kl, scatter).resolve_scale(color="independent"),
        )
        .resolve_scale(color="independent")
        .properties(
            title=titled(
                title,
                f"{runs.labels[a]} vs {runs.labels[b]}; each run's failure rate among its own "
                "baseline-correct trials on the problems both ran; corruptions pooled, "
                "clean control left out",
                note,
            )
        )
    )


def _paired_differences(con: duckdb.DuckDBPyConnection, runs: Runs, title: str) -> alt.TopLevelMixin:
    """B - A failure rate per thought with the paired bootstrap interval over shared problems, as
    `compare` reports it (analysis.compare.thought_differences: RunComparison.by_thought)."""
    a, b = runs.ids
    frame = thought_differences(con, a, b).with_columns(
        panel=pl.format("A L{} / B L{}", "patch_layer_a", "patch_layer_b")
    )
    panels = frame.sort(["patch_layer_a", "patch_layer_b"])["panel"].unique(maintain_order=True).to_list()
    x = alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0))
    y_title = "failure rate B − A (95% paired bootstrap)"
    tip = [
        "panel:N",
        "thought_name:N",
        "problems:Q",
        "n_a:Q",
        "failures_a:Q",
        pct("failure_rate_a", "rate A"),
        "n_b:Q",
        "failures_b:Q",
        pct("failure_rate_b", "rate B"),
        pct("difference", "B − A"),
        pct("diff_low", "95% low"),
        pct("diff_high", "95% high"),
    ]
    zero = alt.Chart().mark_rule(color="#888").encode(y=alt.datum(0))
    whiskers = (
        alt.Chart()
        .mark_rule(color="#222", strokeWidth=1.5)
        .encode(x=x, y=alt.Y("diff_low:Q", title=y_title, axis=PCT), y2="diff_high:Q", tooltip=tip)
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, size=70, color="#222")
        .encode(x=x, y=alt.Y("difference:Q", title=y_title, axis=PCT), tooltip=tip)
    )
    layer = alt.layer(zero, whiskers, points, data=guard(frame, title)).properties(width=300, height=220)
    return facet(layer, panels).properties(
        title=titled(
            "paired difference B − A",
            "the same shared problems resampled for both runs (as `compare` reports it)",
        )
    )


def _model_comparison(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Each run's own summary side by side: accuracy and failure rate by thought (model_comparison)."""
    title = "Runs side by side" if runs.pair else "Run summary"
    frame = rows(con, "SELECT * FROM model_comparison WHERE {runs}", runs)
    if frame.is_empty():
        return empty(title, "no summary for this run")
    per = frame.unpivot(
        on=[f"failure_rate_t{k}" for k in range(6)],
        index=["run", "run_id", "problems"],
        variable_name="thought",
        value_name="rate",
    )
    per = per.with_columns(thought=pl.col("thought").str.replace("failure_rate_t", "T"))
    overall = frame.select(
        "run",
        "run_id",
        "problems",
        "baseline_accuracy",
        "n",
        "failures",
        "failure_rate",
        "ci_low",
        "ci_high",
        "mean_kl",
        "model_name",
        "dataset_name",
    )
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    thought_bars = (
        alt.Chart(per)
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X("thought:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rate:Q", title="failure rate", axis=PCT),
            color=color,
            tooltip=["run:N", "thought:N", "problems:Q", pct("rate", "failure rate")],
            **offset,
        )
        .properties(width=300, height=200, title="failure rate by thought (each run's own problems)")
    )
    y = alt.Y("run:N", sort=runs.label_order, title=None, axis=alt.Axis(labelLimit=320))
    tip = [
        "run:N",
        "model_name:N",
        "dataset_name:N",
        "problems:Q",
        pct("baseline_accuracy"),
        "n:Q",
        "failures:Q",
        pct("failure_rate"),
        pct("ci_low", "95% low"),
        pct("ci_high", "95% high"),
        num("mean_kl", "mean KL"),
    ]
    acc = (
        alt.Chart(overall)
        .mark_bar()
        .encode(
            x=alt.X(
                "baseline_accuracy:Q",
                title="baseline accuracy",
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1]),
                scale=alt.Scale(domain=[0, 1]),
            ),
            y=y,
            color=color,
            tooltip=tip,
        )
        .properties(width=220, height=alt.Step(24), title="baseline accuracy")
    )
    fail = alt.layer(
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("failure_rate:Q", title="failure rate (95% Wilson)", axis=PCT),
            y=y,
            color=color,
            tooltip=tip,
        ),
        alt.Chart().mark_rule(color="#222").encode(x="ci_low:Q", x2="ci_high:Q", y=y),
        data=overall,
    ).properties(width=220, height=alt.Step(24), title="all corruptions")
    return alt.hconcat(thought_bars, alt.vconcat(acc, fail)).properties(
        title=titled(
            title,
            "from model_comparison: every run over all of its own problems (runs need not share problems)",
            notes(runs),
        )
    )


# --- the public face: Run handles in, an Altair chart out ---------------------------------------


def run_comparison(run: Run, vs: Run | None = None) -> Chart:
    """Run A against run B on their shared problems, per thought and per corruption (run_comparison)."""
    return draw(_run_comparison, run, vs)


def model_comparison(run: Run, vs: Run | None = None) -> Chart:
    """Each run's own summary side by side: accuracy and failure rate by thought (model_comparison)."""
    return draw(_model_comparison, run, vs)
