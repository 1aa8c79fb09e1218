"""Charts of attention against importance: EOT -> Tk attention vs Tk's importance by layer, the
correlations by layer, and by difficulty stratum (attention_importance, layer_correlation,
difficulty_strata)."""

from __future__ import annotations

import altair as alt
import duckdb
import polars as pl

from analysis.charts._base import (
    NO_ATTENTION,
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
    run_dash,
    titled,
)
from analysis.charts._data import (
    RUN_COLORS,
    STRATA,
    THOUGHTS,
    Runs,
    rows,
    with_panel,
)
from warehouse.handle import Run


def _attention_vs_importance(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Mean EOT -> Tk attention against Tk's importance, one panel per layer (attention_importance)."""
    title = "Attention from EOT vs importance, by layer"
    frame = rows(
        con,
        """
        SELECT a.run_id, a.patch_layer, a.layer, a.thought, a.thought_name, a.problems, a.mean_attention,
               a.std_attention, a.mean_importance, a.r AS r_thought, c.r AS r_layer, c.r_within
        FROM attention_importance a
        LEFT JOIN layer_correlation c USING (run_id, patch_layer, layer)
        WHERE a.{runs}""",
        runs,
    )
    if frame.is_empty():
        return empty(title, NO_ATTENTION)
    frame = frame.with_columns(
        layer_label=pl.format(
            "layer {} · r = {}", pl.col("layer"), pl.col("r_layer").round(2).cast(pl.String).fill_null("n/a")
        )
    )
    frame, panels = with_panel(frame, runs, extra="layer_label", extra_sort="layer")
    n_layers = frame["layer"].n_unique()
    base = alt.Chart().encode(
        x=alt.X("mean_attention:Q", title="EOT → Tk attention", axis=alt.Axis(format=".2f", tickCount=5)),
        y=alt.Y("mean_importance:Q", title="importance of Tk", axis=PCT),
        tooltip=[
            "run:N",
            "patch_layer:O",
            "layer:O",
            "thought_name:N",
            "problems:Q",
            num("mean_attention", "mean attention"),
            num("std_attention", "std over problems"),
            pct("mean_importance", "mean importance"),
            num("r_thought", "r over problems", ".2f"),
        ],
    )
    points = base.mark_circle(size=70, opacity=0.9).encode(
        color=alt.Color("thought_name:N", sort=THOUGHTS, title="thought", scale=alt.Scale(scheme="viridis"))
    )
    text = base.mark_text(dx=8, align="left", fontSize=10).encode(text="thought_name:N")
    columns = min(n_layers, 6) if len(panels) > n_layers else min(n_layers, 3)  # a row per run or patch layer
    size = {"width": 150, "height": 130} if columns > 3 else {"width": 210, "height": 170}
    chart = alt.layer(points, text, data=guard(frame, title)).properties(**size)
    return facet(chart, panels, columns).properties(
        title=titled(
            title,
            "one point per thought: attention the EOT query gives Tk (baseline, mean over heads and "
            "problems) against Tk's failure rate; r: pooled over problems and thoughts",
            notes(runs),
        )
    )


def _correlation_by_layer(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Pooled and within-problem r by layer, and r per thought (layer_correlation)."""
    title = "Attention-importance correlation by layer"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, layer, n, problems, r, t, r_within, r_t0, r_t1, r_t2, r_t3, "
        "r_t4, r_t5 FROM layer_correlation WHERE {runs}",
        runs,
    )
    if frame.is_empty() or frame["layer"].drop_nulls().is_empty():
        return empty(title, NO_ATTENTION)
    frame, panels = with_panel(frame, runs, by_run=False)
    lines = frame.unpivot(
        on=["r", "r_within"],
        index=["run", "run_id", "panel", "patch_layer", "layer", "n", "problems", "t"],
        variable_name="measure",
        value_name="value",
    )
    lines = lines.with_columns(
        measure=pl.col("measure").replace({"r": "pooled r", "r_within": "within-problem r"})
    )
    dash = {"strokeDash": run_dash(runs)} if runs.pair else {}
    tooltip = [
        "run:N",
        "patch_layer:O",
        "layer:O",
        "measure:N",
        num("value", "r", ".3f"),
        "n:Q",
        "problems:Q",
        num("t", "t", ".2f"),
    ]
    enc = alt.Chart().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("value:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color(
            "measure:N",
            title=None,
            scale=alt.Scale(range=["#4c78a8", "#e45756"]),
            legend=alt.Legend(orient="bottom"),
        ),
        tooltip=tooltip,
    )
    zero = alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0))
    points = enc.mark_point(filled=True).encode(detail="run:N")  # points apart, so the legend shows dashes
    left = alt.layer(zero, enc.mark_line().encode(**dash), points, data=guard(lines, title))
    left = left.properties(width=300, height=220)
    left = facet(left, panels)
    per = frame.unpivot(
        on=[f"r_t{k}" for k in range(6)],
        index=["run", "run_id", "patch_layer", "layer"],
        variable_name="thought",
        value_name="r_thought",
    )
    per = per.with_columns(thought=pl.col("thought").str.replace("r_t", "T"))
    per, per_panels = with_panel(per, runs)
    heat_base = alt.Chart().encode(
        x=alt.X("thought:N", sort=THOUGHTS, title="thought", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("layer:O", title="layer"),
    )
    heat = heat_base.mark_rect().encode(
        color=alt.Color(
            "r_thought:Q",
            title="r per thought",
            scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True),
        ),
        tooltip=[
            "run:N",
            "patch_layer:O",
            "layer:O",
            "thought:N",
            num("r_thought", "r over problems", ".3f"),
        ],
    )
    heat_labels = heat_text(heat_base, "r_thought", ".2f", 0.6, both_signs=True)
    right = alt.layer(heat, heat_labels, data=guard(per, title)).properties(
        width=alt.Step(40), height=alt.Step(22)
    )
    right = facet(right, per_panels)
    return (
        alt.hconcat(left, right)
        .resolve_scale(color="independent")
        .properties(
            title=titled(
                title,
                "left: r between EOT → Tk attention and Tk's importance over (problem, thought) pairs, "
                "and with both centred per problem; right: r over problems for each thought",
                notes(runs),
            )
        )
    )


def _difficulty_strata(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Baseline accuracy, importance and attention-importance r by difficulty stratum (difficulty_strata)."""
    title = "Difficulty strata"
    frame = rows(
        con,
        "SELECT run_id, patch_layer, stratum, problems, problems_all, baseline_accuracy, "
        "mean_importance, failure_rate, layer, n, r, r_within FROM difficulty_strata WHERE {runs}",
        runs,
    )
    if frame.is_empty():
        return empty(title, "no baseline-correct problems with corrupted trials")
    frame = frame.with_columns(stratum=pl.col("stratum").fill_null("?"))
    frame, panels = with_panel(frame, runs, by_run=False)
    strata = STRATA + ["?"]
    per_stratum = frame.unique(["run_id", "patch_layer", "stratum"], maintain_order=True).drop(
        "layer", "n", "r", "r_within"
    )
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    x = alt.X("stratum:N", sort=strata, title="solution steps", axis=alt.Axis(labelAngle=0))
    tip = [
        "run:N",
        "patch_layer:O",
        "stratum:N",
        "problems_all:Q",
        "problems:Q",
        pct("baseline_accuracy"),
        pct("mean_importance", "mean importance"),
        pct("failure_rate", "pooled failure rate"),
    ]
    accuracy = (
        alt.Chart(per_stratum)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y(
                "baseline_accuracy:Q", title="baseline accuracy", axis=PCT, scale=alt.Scale(domain=[0, 1])
            ),
            color=color,
            tooltip=tip,
            **offset,
        )
        .properties(width=200, height=200, title="baseline accuracy")
    )
    importance = (
        alt.Chart(per_stratum)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("mean_importance:Q", title="mean importance", axis=PCT),
            color=color,
            tooltip=tip,
            **offset,
        )
        .properties(width=200, height=200, title="mean importance (baseline-correct problems)")
    )
    counts = (
        alt.Chart(per_stratum)
        .mark_text(dy=-6, fontSize=10, color="#444")
        .encode(x=x, y="mean_importance:Q", text=alt.Text("problems:Q", format="d"), **offset)
    )
    left = alt.hconcat(accuracy, importance + counts)
    correlations = frame.filter(pl.col("layer").is_not_null())
    if correlations.is_empty():
        chart = left
    else:
        dash = {"strokeDash": run_dash(runs)} if runs.pair else {}
        enc = alt.Chart().encode(
            x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("r:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
            color=alt.Color("stratum:N", sort=strata, title="steps", scale=alt.Scale(scheme="viridis")),
            tooltip=[
                "run:N",
                "patch_layer:O",
                "stratum:N",
                "layer:O",
                "n:Q",
                num("r", "r", ".3f"),
                num("r_within", "within-problem r", ".3f"),
            ],
        )
        lines = alt.layer(
            enc.mark_line().encode(**dash),
            enc.mark_point(filled=True).encode(detail="run:N"),
            data=guard(correlations, title),
        )
        right = facet(
            lines.properties(width=240, height=200, title="attention-importance r by layer"), panels
        )
        chart = alt.hconcat(left, right).resolve_scale(color="independent", strokeDash="independent")
    return chart.properties(
        title=titled(
            title,
            "problems grouped by their number of solution steps; "
            "numbers over bars: baseline-correct problems",
            notes(runs),
        )
    )


# --- the public face: Run handles in, an Altair chart out ---------------------------------------


def attention_vs_importance(run: Run, vs: Run | None = None) -> Chart:
    """Mean EOT -> Tk attention against Tk's importance, one panel per layer (attention_importance)."""
    return draw(_attention_vs_importance, run, vs)


def correlation_by_layer(run: Run, vs: Run | None = None) -> Chart:
    """Pooled and within-problem r by layer, and r per thought (layer_correlation)."""
    return draw(_correlation_by_layer, run, vs)


def difficulty_strata(run: Run, vs: Run | None = None) -> Chart:
    """Baseline accuracy, importance and attention-importance r by difficulty stratum (difficulty_strata)."""
    return draw(_difficulty_strata, run, vs)
