"""Charts of attention against importance: EOT -> Tk attention vs Tk's importance by layer, the
correlations by layer, and by difficulty stratum (int_attention_importance, layer_correlation,
difficulty_strata). The p-values and bootstrap intervals of r are analysis.stats.correlation_table's, so
a chart and `stats` show the same numbers."""

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
    MAX_ROWS,
    RUN_COLORS,
    STRATA,
    THOUGHTS,
    Runs,
    rows,
    with_panel,
)
from analysis.stats import N_BOOT, SEED, correlation_table
from warehouse.handle import Run

MAX_PANEL_LAYERS = 8  # layers attention_vs_importance keeps (evenly spread) before thinning problems
STRATUM_COLORS = {  # four hues apart from each other and from the runs' blue and orange
    "<=2": "#1b9e77",
    "3": "#7570b3",
    "4": "#e6ab02",
    "5+": "#e7298a",
    "?": "#9d9d9d",
}
CORRELATION_COLUMNS = {
    "n": pl.Int64,
    "problems": pl.Int64,
    "r": pl.Float64,
    "p": pl.Float64,
    "r_low": pl.Float64,
    "r_high": pl.Float64,
    "r_within": pl.Float64,
    "r_within_low": pl.Float64,
    "r_within_high": pl.Float64,
    **{f"r_t{k}": pl.Float64 for k in range(6)},
}


def correlations(con: duckdb.DuckDBPyConnection, runs: Runs) -> pl.DataFrame:
    """Each run's layer_correlation rows with p and the bootstrap intervals of r and r_within, exactly as
    `stats` computes them (analysis.stats.correlation_table, its bootstrap size and seed; the permutation
    test, which no chart shows, is skipped)."""
    frames = []
    for run_id in runs.ids:
        table = correlation_table(con, run_id, n_boot=N_BOOT, n_perm=0, seed=SEED)
        table = table.with_columns(
            pl.lit(None, dtype).alias(c) for c, dtype in CORRELATION_COLUMNS.items() if c not in table.columns
        )  # a run without pairs (legacy, no attention) has no intervals
        frames.append(
            table.select(
                pl.lit(run_id).alias("run_id"),
                "patch_layer",
                "layer",
                *(pl.col(c).cast(dtype) for c, dtype in CORRELATION_COLUMNS.items()),
            )
        )
    return pl.concat(frames).with_columns(
        run=pl.col("run_id").replace_strict(runs.labels, return_dtype=pl.String)
    )


def _spread(values: list, keep: int) -> list:
    """`keep` of the sorted `values`, evenly spread, first and last included."""
    if keep >= len(values):
        return values
    picks = sorted({round(i * (len(values) - 1) / max(keep - 1, 1)) for i in range(keep)})
    return [values[i] for i in picks]


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _attention_vs_importance(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """EOT -> Tk attention against Tk's importance for every (problem, thought) pair, one panel per layer,
    titled with the pooled r over those pairs, its p and bootstrap interval (int_attention_importance,
    analysis.stats.correlation_table)."""
    title = "Attention from EOT vs importance, by layer"
    pairs = rows(
        con,
        "SELECT run_id, patch_layer, layer, problem_id, thought, attention, importance, trials "
        "FROM int_attention_importance WHERE {runs} ORDER BY run_id, patch_layer, layer, problem_id, thought",
        runs,
    )
    if pairs.is_empty():
        return empty(title, NO_ATTENTION)
    stats = correlations(con, runs).select(
        "run_id", "patch_layer", "layer", "n", "problems", "r", "p", "r_low", "r_high"
    )
    groups = pairs.select("run_id", "patch_layer").n_unique()
    layers = sorted(pairs["layer"].unique().to_list())
    per_layer = pairs.group_by("run_id", "patch_layer", "layer").len()["len"].max()
    shown_layers = _spread(layers, max(MAX_ROWS // (groups * per_layer), min(len(layers), MAX_PANEL_LAYERS)))
    pairs = pairs.filter(pl.col("layer").is_in(shown_layers))
    problems = pairs["problem_id"].unique().sort().to_list()
    keep = max(MAX_ROWS // (groups * len(shown_layers) * len(THOUGHTS)), 1)
    if keep < len(problems):  # too many points even so: an evenly spread sample of problems
        pairs = pairs.filter(pl.col("problem_id").is_in(_spread(problems, keep)))
    frame = pairs.join(stats, on=["run_id", "patch_layer", "layer"], how="left", nulls_equal=True)
    frame = frame.with_columns(
        thought_name=pl.format("T{}", "thought"),
        layer_label=pl.format(
            "layer {}\n{}",
            "layer",
            pl.struct("r", "p", "r_low", "r_high", "n").map_elements(
                lambda c: (
                    f"r = {_fmt(c['r'], '.2f')} [{_fmt(c['r_low'], '.2f')}, "
                    f"{_fmt(c['r_high'], '.2f')}], p = {_fmt(c['p'], '.2g')}, n = {c['n']}"
                ),
                return_dtype=pl.String,
            ),
        ),
    )
    frame, panels = with_panel(frame, runs, extra="layer_label", extra_sort="layer")
    samples = []
    if len(shown_layers) < len(layers):
        samples.append(f"{len(shown_layers)} of {len(layers)} layers shown, evenly spread")
    shown_problems = frame["problem_id"].n_unique()
    if shown_problems < len(problems):
        samples.append(f"points of {shown_problems} of {len(problems)} problems shown (r over all)")
    points = (
        alt.Chart(guard(frame, title))
        .mark_circle(size=24, opacity=0.6)
        .encode(
            x=alt.X("attention:Q", title="EOT → Tk attention", axis=alt.Axis(format=".2f", tickCount=4)),
            y=alt.Y("importance:Q", title="importance of Tk (failure rate)", axis=PCT),
            color=alt.Color(
                "thought_name:N",
                sort=THOUGHTS,
                title="thought",
                scale=alt.Scale(domain=THOUGHTS, scheme="viridis"),
            ),
            tooltip=[
                "run:N",
                "patch_layer:O",
                "layer:O",
                "problem_id:N",
                "thought_name:N",
                num("attention", "EOT → Tk attention"),
                pct("importance", "failure rate"),
                "trials:Q",
                num("r", "pooled r", ".3f"),
                num("p", "p", ".3g"),
                num("r_low", "r 95% low", ".3f"),
                num("r_high", "r 95% high", ".3f"),
            ],
        )
        .properties(width=190, height=150)
    )
    chart = points.facet(
        facet=alt.Facet(
            "panel:N",
            sort=panels,
            title=None,
            header=alt.Header(labelExpr="split(datum.value, '\\n')", labelFontSize=11, labelLimit=0),
        ),
        columns=min(len(panels), 4),
    )
    return chart.properties(
        title=titled(
            title,
            "one point per (problem, thought): attention the EOT query gives Tk (baseline, mean over heads) "
            "against Tk's failure rate on that problem; panel titles: Pearson r over these pairs, its 95% "
            "bootstrap interval over problems and its p (as `stats` gives them)",
            "; ".join(samples),
            notes(runs),
        )
    )


def _correlation_by_layer(con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """Pooled and within-problem r by layer with their bootstrap intervals, and r per thought
    (layer_correlation, analysis.stats.correlation_table)."""
    title = "Attention-importance correlation by layer"
    frame = correlations(con, runs)
    if frame.is_empty() or frame["layer"].drop_nulls().is_empty():
        return empty(title, NO_ATTENTION)
    frame = frame.filter(pl.col("layer").is_not_null())
    frame, panels = with_panel(frame, runs, by_run=False)
    measures = {"r": "pooled r", "r_within": "within-problem r"}
    lines = pl.concat(
        frame.select(
            "run",
            "run_id",
            "panel",
            "patch_layer",
            "layer",
            "n",
            "problems",
            "p",
            pl.lit(label).alias("measure"),
            pl.col(column).alias("value"),
            pl.col(f"{column}_low").alias("low"),
            pl.col(f"{column}_high").alias("high"),
        )
        for column, label in measures.items()
    )
    dash = {"strokeDash": run_dash(runs)} if runs.pair else {}
    tooltip = [
        "run:N",
        "patch_layer:O",
        "layer:O",
        "measure:N",
        num("value", "r", ".3f"),
        num("low", "95% low", ".3f"),
        num("high", "95% high", ".3f"),
        num("p", "p (pooled r)", ".3g"),
        "n:Q",
        "problems:Q",
    ]
    color = alt.Color(
        "measure:N",
        title=None,
        scale=alt.Scale(domain=list(measures.values()), range=["#4c78a8", "#e45756"]),
        legend=alt.Legend(orient="bottom", symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3),
    )
    x = alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0))
    y = alt.Y("value:Q", title="Pearson r (95% bootstrap band)", scale=alt.Scale(zero=False, nice=True))
    zero = alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0))
    band = (
        alt.Chart()
        .mark_area(opacity=0.18)
        .encode(x=x, y=alt.Y("low:Q", title="Pearson r (95% bootstrap band)"), y2="high:Q", color=color)
        .encode(detail="run:N")
    )
    enc = alt.Chart().encode(x=x, y=y, color=color, tooltip=tooltip)
    points = enc.mark_point(filled=True).encode(detail="run:N")  # points apart, so the legend shows dashes
    left = alt.layer(zero, band, enc.mark_line().encode(**dash), points, data=guard(lines, title))
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
                "and with both centred per problem, bands: 95% bootstrap intervals over problems "
                "(as `stats` gives them); right: r over problems for each thought",
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
    by_layer = frame.filter(pl.col("layer").is_not_null())
    if by_layer.is_empty():
        chart = left
    else:
        dash = {"strokeDash": run_dash(runs)} if runs.pair else {}
        shown = [s for s in strata if s in set(by_layer["stratum"])]  # in vocab order, never string order
        enc = alt.Chart().encode(
            x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("r:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
            color=alt.Color(
                "stratum:N",
                sort=shown,
                title="steps",
                scale=alt.Scale(domain=shown, range=[STRATUM_COLORS[s] for s in shown]),
            ),
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
            data=guard(by_layer, title),
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
    """EOT -> Tk attention against Tk's importance per (problem, thought), one panel per layer, titled with
    the pooled r, its p and bootstrap interval (int_attention_importance, stats.correlation_table)."""
    return draw(_attention_vs_importance, run, vs)


def correlation_by_layer(run: Run, vs: Run | None = None) -> Chart:
    """Pooled and within-problem r by layer with bootstrap bands, and r per thought (layer_correlation,
    stats.correlation_table)."""
    return draw(_correlation_by_layer, run, vs)


def difficulty_strata(run: Run, vs: Run | None = None) -> Chart:
    """Baseline accuracy, importance and attention-importance r by difficulty stratum (difficulty_strata)."""
    return draw(_difficulty_strata, run, vs)
