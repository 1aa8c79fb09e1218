"""The charts of SPEC 8: one function per chart, each reading only from the views.

Every function takes an open DuckDB connection, a run id and an optional second run id (`vs`) and
returns an Altair chart. With two runs, run A and run B appear side by side (by colour, or a panel
per run); a run patched at several layers gets a panel per patch layer. SQL does the aggregation, so
what a chart embeds stays small whatever the run's size. `CHARTS` (at the end) lists them in report
order with the views each reads and a caption.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import polars as pl

from analysis.chart_data import (
    KEYS,
    MAX_ROWS,
    QUERIES,
    RUN_COLORS,
    STRATA,
    THOUGHTS,
    Runs,
    condition_label,
    condition_labels,
    load_runs,
    rows,
    with_panel,
)

PCT = alt.Axis(format="%")
TOP_HEADS, TOP_RANKED, MAX_PROBLEM_CELLS = 6, 20, 4200
HEAD_TYPES = ["Sequential", "Hub", "Skip", "Multi-Purpose"]
FLOW_KINDS = ["previous thought A[Ti → Ti-1]", "self A[Ti → Ti]", "skip A[T5 → T0..T2]"]
NO_ATTENTION = "no baseline attention captured for this run (--attention none, or a file without attention)"


# --- shared pieces -------------------------------------------------------------------------------------
def _title(text: str, *subtitle: str) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=[s for s in subtitle if s])


def _empty(title: str, message: str) -> alt.Chart:
    """A chart that says why it has nothing to show, instead of an empty frame."""
    return (alt.Chart(pl.DataFrame({"message": [message]})).mark_text(align="left", x=0, fontSize=13, color="#777")
            .encode(text="message:N").properties(title=_title(title), width=520, height=30))


def _run_color(runs: Runs) -> alt.Color:
    return alt.Color("run:N", scale=alt.Scale(domain=runs.label_order, range=RUN_COLORS),
                     legend=alt.Legend(title="run", orient="bottom", direction="vertical", labelLimit=500))


def _run_dash(runs: Runs) -> alt.StrokeDash:
    """Run A solid, run B dashed (for line charts whose colour already means something else)."""
    return alt.StrokeDash("run:N", sort=runs.label_order, title="run",
                          legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=500,
                                            symbolStrokeColor="#333"))


def _facet(chart, panels: list[str], columns: int | None = None):
    """Facet by `panel` only when there is more than one panel."""
    if len(panels) <= 1:
        return chart
    return chart.facet(facet=alt.Facet("panel:N", sort=panels, title=None,
                                       header=alt.Header(labelFontWeight="bold", labelLimit=400)),
                       columns=columns or len(panels))


def _notes(runs: Runs) -> str:
    return "legacy run: positions are the research scripts' token indices, not our T0..T5 (SPEC 10)" \
        if runs.legacy else ""


def _guard(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    """A chart query that forgot to aggregate fails here, loudly, instead of embedding millions of rows."""
    if frame.height > MAX_ROWS:
        raise ValueError(f"chart {what!r} would embed {frame.height} rows; aggregate in SQL (limit {MAX_ROWS})")
    return frame


def _pct(field: str, title: str | None = None) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", format=".1%", title=title or field)


def _num(field: str, title: str | None = None, fmt: str = ".3f") -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", format=fmt, title=title or field)


def _heat_text(base: alt.Chart, field: str, fmt: str, threshold: float, minimum: float | None = None,
               both_signs: bool = False):
    """Cell labels over `base`'s cells, white on dark cells; cells below `minimum` stay unlabelled."""
    value = f"abs(datum.{field})" if both_signs else f"datum.{field}"
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text(f"{field}:Q", format=fmt),
        color=alt.condition(f"{value} > {threshold}", alt.value("white"), alt.value("#222")))
    shown = f"isValid(datum.{field})" + (f" && datum.{field} >= {minimum}" if minimum is not None else "")
    return text.transform_filter(shown)


def _attention_matrix(frame: pl.DataFrame, panels: list[str], columns: int, title: alt.TitleParams,
                      extra_tooltip: list) -> alt.TopLevelMixin:
    """Query (T0..T5, EOT) x key (Q, BOT, T0..T5, EOT) heatmaps of mean attention, one per panel."""
    base = alt.Chart().encode(
        x=alt.X("src_name:N", sort=KEYS, title="key (attended to)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("dst_name:N", sort=QUERIES, title="query (attending)"))
    rect = base.mark_rect().encode(
        color=alt.Color("mean_weight:Q", title="attention", scale=alt.Scale(scheme="blues", domain=[0, 1],
                                                                             type="sqrt")),
        tooltip=["panel:N", "dst_name:N", "src_name:N", _num("mean_weight", "mean attention"), *extra_tooltip])
    text = _heat_text(base, "mean_weight", ".2f", 0.35, minimum=0.005)
    chart = alt.layer(rect, text, data=frame).properties(width=alt.Step(30), height=alt.Step(22))
    return _facet(chart, panels, columns).properties(title=title)


# --- results ---------------------------------------------------------------------------------------------
def importance_by_thought(con, run: str, vs: str | None = None):
    """Failure rate after corrupting each thought, with its 95% Wilson interval (token_importance)."""
    runs = load_runs(con, run, vs)
    title = "Importance by thought"
    frame = rows(con, "SELECT run_id, patch_layer, thought, thought_name, problems, n, failures, failure_rate, "
                      "ci_low, ci_high, mean_kl, mean_logp_drop FROM token_importance WHERE {runs}", runs)
    if frame.is_empty():
        return _empty(title, "no corrupted trials on baseline-correct problems")
    frame, panels = with_panel(frame, runs, by_run=False)
    x = alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0))
    tooltip = ["run:N", "patch_layer:O", "thought_name:N", "problems:Q", "n:Q", "failures:Q",
               _pct("failure_rate", "failure rate"), _pct("ci_low", "95% low"), _pct("ci_high", "95% high"),
               _num("mean_kl", "mean KL"), _num("mean_logp_drop", "mean log p drop")]
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    bars = alt.Chart().mark_bar(opacity=0.85).encode(
        x=x, y=alt.Y("failure_rate:Q", title="failure rate", axis=PCT),
        color=_run_color(runs) if runs.pair else alt.value(RUN_COLORS[0]), tooltip=tooltip, **offset)
    err = alt.Chart().mark_rule(strokeWidth=1.5, color="#222").encode(
        x=x, y="ci_low:Q", y2="ci_high:Q", tooltip=tooltip, **offset)
    chart = alt.layer(bars, err, data=_guard(frame, title)).properties(width=340 if runs.pair else 300, height=240)
    return _facet(chart, panels, 3).properties(title=_title(
        title, "share of corrupted trials that flipped a baseline-correct answer; corruptions pooled, clean "
               "control left out; lines: 95% Wilson interval", _notes(runs)))


def thought_method_heatmap(con, run: str, vs: str | None = None):
    """Failure rate for every thought x corruption (importance_matrix)."""
    runs = load_runs(con, run, vs)
    title = "Importance by thought and corruption"
    frame = rows(con, "SELECT run_id, patch_layer, thought_name, method, sigma, n, failures, failure_rate, "
                      "ci_low, ci_high, mean_kl FROM importance_matrix WHERE {runs}", runs)
    if frame.is_empty():
        return _empty(title, "no corrupted trials on baseline-correct problems")
    frame, conditions = condition_labels(frame)
    frame, panels = with_panel(frame, runs)
    top = max(frame["failure_rate"].drop_nulls().max() or 0.0, 0.05)
    base = alt.Chart().encode(
        x=alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("condition_label:N", sort=conditions, title="corruption"))
    rect = base.mark_rect().encode(
        color=alt.Color("failure_rate:Q", title="failure rate", legend=alt.Legend(format="%"),
                        scale=alt.Scale(scheme="reds", domain=[0, top])),
        tooltip=["run:N", "patch_layer:O", "thought_name:N", "condition_label:N", "n:Q", "failures:Q",
                 _pct("failure_rate", "failure rate"), _pct("ci_low", "95% low"), _pct("ci_high", "95% high"),
                 _num("mean_kl", "mean KL")])
    text = _heat_text(base, "failure_rate", ".0%", top * 0.55)
    chart = alt.layer(rect, text, data=_guard(frame, title)).properties(width=alt.Step(46), height=alt.Step(26))
    return _facet(chart, panels).properties(title=_title(
        title, "failure rate among baseline-correct trials; hover a cell for n and the 95% Wilson interval",
        _notes(runs)))


def problem_thought_heatmap(con, run: str, vs: str | None = None):
    """Per problem and thought: share of corruptions that flipped it (int_problem_importance, stg_problems)."""
    runs = load_runs(con, run, vs)
    title = "Importance per problem and thought"
    groups = len(runs.ids) * max(len(v) for v in runs.patch_layers.values()) or 1
    cap = max(MAX_PROBLEM_CELLS // (len(THOUGHTS) * groups), 1)
    frame = rows(con, """
        WITH p AS (
            SELECT i.run_id, i.patch_layer, i.problem_id, i.thought, i.trials, i.failures, i.importance,
                   s.n_steps, stratum(s.n_steps) AS stratum,
                   dense_rank() OVER (PARTITION BY i.run_id, i.patch_layer ORDER BY s.n_steps, i.problem_id) AS k
            FROM int_problem_importance i LEFT JOIN stg_problems s USING (problem_id)
            WHERE i.{runs}
        ), q AS (SELECT *, max(k) OVER (PARTITION BY run_id, patch_layer) AS total FROM p)
        SELECT *, 'T' || thought AS thought_name, left(problem_id, 8) AS problem
        FROM q WHERE (k - 1) % greatest(1, ceil(total / ?))::BIGINT = 0
        """, runs, params=[cap])
    if frame.is_empty():
        return _empty(title, "no baseline-correct problems with corrupted trials")
    shown = frame.select(pl.col("problem_id").n_unique()).item()
    total = int(frame["total"].max())
    frame, panels = with_panel(frame, runs)
    frame = frame.with_columns(stratum_label=pl.format("{} steps", pl.col("stratum").fill_null("?")))
    strata = [f"{s} steps" for s in STRATA] + ["? steps"]
    many = frame.select(pl.col("problem_id").n_unique()).item() > 50
    present = [s for s in strata if s in set(frame["stratum_label"])]
    order = frame.sort("n_steps", "problem_id", nulls_last=True)["problem"].unique(maintain_order=True).to_list()

    def block(stratum: str, last: bool):
        """One stratum's problems; the thought axis only under the last block."""
        x_axis = alt.Axis(labelAngle=0) if last else None
        cell = alt.Chart(_guard(frame, title)).mark_rect().encode(
            x=alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought" if last else None, axis=x_axis),
            y=alt.Y("problem:N", sort=order, title=None,
                    axis=alt.Axis(labels=not many, ticks=not many, labelFontSize=9)),
            color=alt.Color("importance:Q", title="share flipped", legend=alt.Legend(format="%"),
                            scale=alt.Scale(scheme="reds", domain=[0, 1])),
            tooltip=["run:N", "patch_layer:O", "problem_id:N", "n_steps:Q", "thought_name:N", "trials:Q",
                     "failures:Q", _pct("importance", "share flipped")],
        ).transform_filter(alt.datum.stratum_label == stratum)
        cell = cell.properties(width=alt.Step(40), height=alt.Step(5 if many else 14))
        return _facet(cell, panels).properties(title=alt.TitleParams(stratum, fontSize=12))

    # one block per stratum (a row facet with independent y scales trips a Vega-Lite bug)
    blocks = [block(s, i == len(present) - 1) for i, s in enumerate(present)]
    chart = alt.vconcat(*blocks, spacing=8)
    sample = f"{shown} of {total} problems shown, evenly spread" if shown < total else ""
    return chart.properties(title=_title(
        title, "baseline-correct problems grouped by solution steps; each cell: share of the thought's "
               "corruptions that flipped the answer", sample, _notes(runs)))


# --- attention and importance --------------------------------------------------------------------------
def attention_vs_importance(con, run: str, vs: str | None = None):
    """Mean EOT -> Tk attention against Tk's importance, one panel per layer (attention_importance)."""
    runs = load_runs(con, run, vs)
    title = "Attention from EOT vs importance, by layer"
    frame = rows(con, """
        SELECT a.run_id, a.patch_layer, a.layer, a.thought, a.thought_name, a.problems, a.mean_attention,
               a.std_attention, a.mean_importance, a.r AS r_thought, c.r AS r_layer, c.r_within
        FROM attention_importance a
        LEFT JOIN layer_correlation c USING (run_id, patch_layer, layer)
        WHERE a.{runs}""", runs)
    if frame.is_empty():
        return _empty(title, NO_ATTENTION)
    frame = frame.with_columns(layer_label=pl.format("layer {} · r = {}", pl.col("layer"),
                                                     pl.col("r_layer").round(2).cast(pl.String).fill_null("n/a")))
    frame, panels = with_panel(frame, runs, extra="layer_label", extra_sort="layer")
    n_layers = frame["layer"].n_unique()
    base = alt.Chart().encode(
        x=alt.X("mean_attention:Q", title="EOT → Tk attention", axis=alt.Axis(format=".2f", tickCount=5)),
        y=alt.Y("mean_importance:Q", title="importance of Tk", axis=PCT),
        tooltip=["run:N", "patch_layer:O", "layer:O", "thought_name:N", "problems:Q",
                 _num("mean_attention", "mean attention"), _num("std_attention", "std over problems"),
                 _pct("mean_importance", "mean importance"), _num("r_thought", "r over problems", ".2f")])
    points = base.mark_circle(size=70, opacity=0.9).encode(
        color=alt.Color("thought_name:N", sort=THOUGHTS, title="thought", scale=alt.Scale(scheme="viridis")))
    text = base.mark_text(dx=8, align="left", fontSize=10).encode(text="thought_name:N")
    columns = min(n_layers, 6) if len(panels) > n_layers else min(n_layers, 3)  # a row per run or patch layer
    size = {"width": 150, "height": 130} if columns > 3 else {"width": 210, "height": 170}
    chart = alt.layer(points, text, data=_guard(frame, title)).properties(**size)
    return _facet(chart, panels, columns).properties(title=_title(
        title, "one point per thought: attention the EOT query gives Tk (baseline, mean over heads and "
               "problems) against Tk's failure rate; r: pooled over problems and thoughts", _notes(runs)))


def correlation_by_layer(con, run: str, vs: str | None = None):
    """Pooled and within-problem r by layer, and r per thought (layer_correlation)."""
    runs = load_runs(con, run, vs)
    title = "Attention-importance correlation by layer"
    frame = rows(con, "SELECT run_id, patch_layer, layer, n, problems, r, t, r_within, r_t0, r_t1, r_t2, r_t3, "
                      "r_t4, r_t5 FROM layer_correlation WHERE {runs}", runs)
    if frame.is_empty() or frame["layer"].drop_nulls().is_empty():
        return _empty(title, NO_ATTENTION)
    frame, panels = with_panel(frame, runs, by_run=False)
    lines = frame.unpivot(on=["r", "r_within"], index=["run", "run_id", "panel", "patch_layer", "layer", "n",
                                                       "problems", "t"], variable_name="measure", value_name="value")
    lines = lines.with_columns(measure=pl.col("measure").replace({"r": "pooled r", "r_within": "within-problem r"}))
    dash = {"strokeDash": _run_dash(runs)} if runs.pair else {}
    tooltip = ["run:N", "patch_layer:O", "layer:O", "measure:N", _num("value", "r", ".3f"), "n:Q", "problems:Q",
               _num("t", "t", ".2f")]
    enc = alt.Chart().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("value:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color("measure:N", title=None, scale=alt.Scale(range=["#4c78a8", "#e45756"]),
                        legend=alt.Legend(orient="bottom")), tooltip=tooltip)
    zero = alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0))
    points = enc.mark_point(filled=True).encode(detail="run:N")  # points apart, so the legend shows dashes
    left = alt.layer(zero, enc.mark_line().encode(**dash), points, data=_guard(lines, title))
    left = left.properties(width=300, height=220)
    left = _facet(left, panels)
    per = frame.unpivot(on=[f"r_t{k}" for k in range(6)], index=["run", "run_id", "patch_layer", "layer"],
                        variable_name="thought", value_name="r_thought")
    per = per.with_columns(thought=pl.col("thought").str.replace("r_t", "T"))
    per, per_panels = with_panel(per, runs)
    heat_base = alt.Chart().encode(x=alt.X("thought:N", sort=THOUGHTS, title="thought", axis=alt.Axis(labelAngle=0)),
                                   y=alt.Y("layer:O", title="layer"))
    heat = heat_base.mark_rect().encode(
        color=alt.Color("r_thought:Q", title="r per thought", scale=alt.Scale(scheme="redblue", domain=[-1, 1],
                                                                              reverse=True)),
        tooltip=["run:N", "patch_layer:O", "layer:O", "thought:N", _num("r_thought", "r over problems", ".3f")])
    heat_text = _heat_text(heat_base, "r_thought", ".2f", 0.6, both_signs=True)
    right = alt.layer(heat, heat_text, data=_guard(per, title)).properties(width=alt.Step(40), height=alt.Step(22))
    right = _facet(right, per_panels)
    return alt.hconcat(left, right).resolve_scale(color="independent").properties(title=_title(
        title, "left: r between EOT → Tk attention and Tk's importance over (problem, thought) pairs, and with "
               "both centred per problem; right: r over problems for each thought", _notes(runs)))


def difficulty_strata(con, run: str, vs: str | None = None):
    """Baseline accuracy, importance and attention-importance r by difficulty stratum (difficulty_strata)."""
    runs = load_runs(con, run, vs)
    title = "Difficulty strata"
    frame = rows(con, "SELECT run_id, patch_layer, stratum, problems, problems_all, baseline_accuracy, "
                      "mean_importance, failure_rate, layer, n, r, r_within FROM difficulty_strata WHERE {runs}", runs)
    if frame.is_empty():
        return _empty(title, "no baseline-correct problems with corrupted trials")
    frame = frame.with_columns(stratum=pl.col("stratum").fill_null("?"))
    frame, panels = with_panel(frame, runs, by_run=False)
    strata = STRATA + ["?"]
    per_stratum = frame.unique(["run_id", "patch_layer", "stratum"], maintain_order=True).drop("layer", "n", "r",
                                                                                                "r_within")
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = _run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    x = alt.X("stratum:N", sort=strata, title="solution steps", axis=alt.Axis(labelAngle=0))
    tip = ["run:N", "patch_layer:O", "stratum:N", "problems_all:Q", "problems:Q", _pct("baseline_accuracy"),
           _pct("mean_importance", "mean importance"), _pct("failure_rate", "pooled failure rate")]
    accuracy = alt.Chart(per_stratum).mark_bar().encode(
        x=x, y=alt.Y("baseline_accuracy:Q", title="baseline accuracy", axis=PCT, scale=alt.Scale(domain=[0, 1])),
        color=color, tooltip=tip, **offset).properties(width=200, height=200, title="baseline accuracy")
    importance = alt.Chart(per_stratum).mark_bar().encode(
        x=x, y=alt.Y("mean_importance:Q", title="mean importance", axis=PCT), color=color, tooltip=tip,
        **offset).properties(width=200, height=200, title="mean importance (baseline-correct problems)")
    counts = alt.Chart(per_stratum).mark_text(dy=-6, fontSize=10, color="#444").encode(
        x=x, y="mean_importance:Q", text=alt.Text("problems:Q", format="d"), **offset)
    left = alt.hconcat(accuracy, importance + counts)
    correlations = frame.filter(pl.col("layer").is_not_null())
    if correlations.is_empty():
        chart = left
    else:
        dash = {"strokeDash": _run_dash(runs)} if runs.pair else {}
        enc = alt.Chart().encode(
            x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("r:Q", title="Pearson r", scale=alt.Scale(domain=[-1, 1])),
            color=alt.Color("stratum:N", sort=strata, title="steps", scale=alt.Scale(scheme="viridis")),
            tooltip=["run:N", "patch_layer:O", "stratum:N", "layer:O", "n:Q", _num("r", "r", ".3f"),
                     _num("r_within", "within-problem r", ".3f")])
        lines = alt.layer(enc.mark_line().encode(**dash), enc.mark_point(filled=True).encode(detail="run:N"),
                          data=_guard(correlations, title))
        right = _facet(lines.properties(width=240, height=200, title="attention-importance r by layer"), panels)
        chart = alt.hconcat(left, right).resolve_scale(color="independent", strokeDash="independent")
    return chart.properties(title=_title(
        title, "problems grouped by their number of solution steps; numbers over bars: baseline-correct problems",
        _notes(runs)))


def method_effects(con, run: str, vs: str | None = None):
    """Failure rate, KL and attention disruption for each corruption (method_comparison)."""
    runs = load_runs(con, run, vs)
    title = "Failure rate, KL and disruption by corruption"
    frame = rows(con, "SELECT run_id, patch_layer, method, sigma, n, failures, failure_rate, ci_low, ci_high, "
                      "n_all, mean_kl, mean_js, mean_entropy_change, mean_kl_first, mean_logp_drop, mean_disruption "
                      "FROM method_comparison WHERE {runs}", runs)
    if frame.is_empty():
        return _empty(title, "no corrupted trials in this run")
    frame, conditions = condition_labels(frame)
    frame, panels = with_panel(frame, runs, by_run=False)
    offset = {"yOffset": alt.YOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = _run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    y = alt.Y("condition_label:N", sort=conditions, title="corruption")
    tip = ["run:N", "patch_layer:O", "condition_label:N", "n:Q", "failures:Q", _pct("failure_rate", "failure rate"),
           _pct("ci_low", "95% low"), _pct("ci_high", "95% high"), "n_all:Q", _num("mean_kl", "mean KL (answer)"),
           _num("mean_js", "mean JS (answer)"), _num("mean_entropy_change", "mean entropy change (answer)"),
           _num("mean_kl_first", "mean KL (EOT, template token)"), _num("mean_logp_drop", "mean log p drop"),
           _num("mean_disruption", "mean disruption")]

    def bars(field: str, axis_title: str, fmt: str | None = None, interval: bool = False):
        axis = alt.Axis(format=fmt, tickCount=5) if fmt else alt.Axis(tickCount=5)
        bar = alt.Chart().mark_bar(opacity=0.85).encode(
            y=y, x=alt.X(f"{field}:Q", title=axis_title, axis=axis), color=color, tooltip=tip, **offset)
        layers = [bar]
        if interval:
            layers.append(alt.Chart().mark_rule(color="#222").encode(y=y, x="ci_low:Q", x2="ci_high:Q", **offset))
        chart = alt.layer(*layers, data=frame).properties(width=230, height=alt.Step(12 if runs.pair else 20))
        return _facet(chart, panels, 1)

    chart = alt.hconcat(bars("failure_rate", "failure rate (95% Wilson)", "%", True),
                        bars("mean_kl", "mean KL at the answer (nats)"),
                        bars("mean_disruption", "mean EOT attention disruption"))
    return chart.properties(title=_title(
        title, "KL: baseline vs corrupted next-token distribution at the answer number, every corrupted trial; "
               "disruption: L2 change of the last layer's EOT attention", _notes(runs)))


# --- attention flow --------------------------------------------------------------------------------------
def top_head_matrices(con, run: str, vs: str | None = None):
    """The top-ranked heads' attention matrices over thoughts (flow_matrix, head_metrics)."""
    runs = load_runs(con, run, vs)
    title = f"Attention matrices of the top {TOP_HEADS} heads"
    frame = rows(con, """
        SELECT f.run_id, f.layer, f.head, f.dst, f.dst_name, f.src, f.src_name, f.mean_weight, f.std_weight, f.n,
               h.rank, h.functional_type, h.composite
        FROM flow_matrix f JOIN head_metrics h USING (run_id, layer, head)
        WHERE f.{runs} AND h.rank <= ?""", runs, params=[TOP_HEADS])
    if frame.is_empty():
        return _empty(title, NO_ATTENTION)
    frame = frame.with_columns(head_label=pl.format("#{} L{} H{} · {}", "rank", "layer", "head", "functional_type"))
    frame, panels = with_panel(frame, runs, patch_column=None, extra="head_label", extra_sort="rank")
    return _attention_matrix(_guard(frame, title), panels, 3, _title(
        title, "mean baseline attention over problems; rows: the query position, columns: the key; Q = the "
               "question's tokens summed; heads ranked by head_metrics' composite score", _notes(runs)),
        ["rank:Q", "functional_type:N", _num("std_weight", "std over problems"), "n:Q"])


def layer_matrices(con, run: str, vs: str | None = None):
    """Thought-to-thought attention averaged over heads, one matrix per layer (flow_matrix)."""
    runs = load_runs(con, run, vs)
    title = "Attention matrices by layer (mean over heads)"
    frame = rows(con, "SELECT run_id, layer, dst, dst_name, src, src_name, avg(mean_weight) AS mean_weight, "
                      "min(mean_weight) AS min_head, max(mean_weight) AS max_head, count(*) AS heads "
                      "FROM flow_matrix WHERE {runs} GROUP BY ALL", runs)
    if frame.is_empty():
        return _empty(title, NO_ATTENTION)
    frame = frame.with_columns(layer_label=pl.format("layer {}", "layer"))
    frame, panels = with_panel(frame, runs, patch_column=None, extra="layer_label", extra_sort="layer")
    columns = 3 if frame["layer"].n_unique() <= 6 else 4
    return _attention_matrix(_guard(frame, title), panels, columns, _title(
        title, "mean baseline attention over problems and heads; rows: query, columns: key; Q = the question's "
               "tokens summed", _notes(runs)),
        [_num("min_head", "lowest head"), _num("max_head", "highest head"), "heads:Q"])


def hub_flow_skip(con, run: str, vs: str | None = None):
    """Hub scores, previous-thought flow, self-attention and skips (hub_scores, sequential_flow,
    self_attention, skip_connections)."""
    runs = load_runs(con, run, vs)
    title = "Hubs, sequential flow, self-attention and skips"
    hub = rows(con, "SELECT run_id, position, position_name, later_thoughts, incoming_raw, incoming_norm, hub_ratio, "
                    "hub_ratio_raw, heads FROM hub_scores WHERE {runs} AND position BETWEEN 0 AND 5", runs)
    flow = rows(con, f"""
        SELECT run_id, kind, layer, dst, src, replace(pair, '->', '→') AS pair, avg(mean_weight) AS mean_weight,
               min(mean_weight) AS min_head, max(mean_weight) AS max_head, count(*) AS heads
        FROM (SELECT '{FLOW_KINDS[0]}' AS kind, * FROM sequential_flow
              UNION ALL BY NAME SELECT '{FLOW_KINDS[1]}' AS kind, * FROM self_attention
              UNION ALL BY NAME SELECT '{FLOW_KINDS[2]}' AS kind, * FROM skip_connections)
        WHERE {{runs}} GROUP BY ALL ORDER BY dst, src""", runs)
    if hub.is_empty() and flow.is_empty():
        return _empty(title, NO_ATTENTION)
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = _run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    ratios = ", ".join((f"{runs.letters[r['run_id']]} " if runs.pair else "") + f"{r['hub_ratio']:.2f}"
                       for r in hub.unique("run_id", maintain_order=True).to_dicts() if r["hub_ratio"] is not None)
    tip = ["run:N", "position_name:N", "later_thoughts:Q", _num("incoming_norm", "per later thought"),
           _num("incoming_raw", "column sum (raw)"), _num("hub_ratio", "hub ratio"),
           _num("hub_ratio_raw", "hub ratio (raw)"), "heads:Q"]
    x = alt.X("position_name:N", sort=THOUGHTS, title="thought attended to", axis=alt.Axis(labelAngle=0))
    norm = alt.Chart(hub).mark_bar().encode(
        x=x, y=alt.Y("incoming_norm:Q", title="mean attention from each later thought"), color=color,
        tooltip=tip, **offset).properties(width=250, height=180, title=_title(
            "incoming attention, normalized", ratios and f"hub ratio (max / mean): {ratios}"))
    raw = alt.Chart(hub).mark_bar().encode(
        x=x, y=alt.Y("incoming_raw:Q", title="column sum of the 6x6 matrix"), color=color, tooltip=tip,
        **offset).properties(width=250, height=180, title=_title(
            "incoming attention, raw column sum", "the research definition: favours early thoughts"))
    panels = [alt.hconcat(norm, raw)]
    if not flow.is_empty():
        flow, flow_panels = with_panel(flow, runs, patch_column=None)
        top = max(flow["mean_weight"].max(), 0.05)
        heat = []
        for kind in sorted(flow["kind"].unique().to_list(), key=FLOW_KINDS.index):
            part = flow.filter(pl.col("kind") == kind)
            pairs = part.sort("dst", "src")["pair"].unique(maintain_order=True).to_list()
            base = alt.Chart().encode(x=alt.X("pair:N", sort=pairs, title=None, axis=alt.Axis(labelAngle=-40)),
                                      y=alt.Y("layer:O", title="layer"))
            rect = base.mark_rect().encode(
                color=alt.Color("mean_weight:Q", title="attention (head mean)",
                                scale=alt.Scale(scheme="blues", domain=[0, top])),
                tooltip=["run:N", "kind:N", "layer:O", "pair:N", _num("mean_weight", "mean over heads"),
                         _num("min_head", "lowest head"), _num("max_head", "highest head"), "heads:Q"])
            text = _heat_text(base, "mean_weight", ".2f", top * 0.55)
            layer = alt.layer(rect, text, data=part).properties(width=alt.Step(32 if runs.pair else 40),
                                                                height=alt.Step(20))
            heat.append(_facet(layer, flow_panels).properties(title=kind))
        panels.append(alt.hconcat(*heat))
    return alt.vconcat(*panels).resolve_scale(color="independent").properties(title=_title(
        title, "baseline attention averaged over problems, heads and (top row) layers", _notes(runs)))


def head_ranking(con, run: str, vs: str | None = None):
    """Heads ranked by the composite of flow, hub and skip scores, and all heads by layer (head_metrics)."""
    runs = load_runs(con, run, vs)
    title = "Head ranking"
    frame = rows(con, "SELECT run_id, layer, head, flow, hub, skip, self_attn, flow_scaled, hub_scaled, "
                      "skip_scaled, composite, functional_type, rank FROM head_metrics WHERE {runs}", runs)
    if frame.is_empty():
        return _empty(title, NO_ATTENTION)
    frame = frame.with_columns(head_label=pl.format("L{} H{}", "layer", "head"))
    frame, panels = with_panel(frame, runs, patch_column=None)
    tip = ["run:N", "rank:Q", "layer:O", "head:O", "functional_type:N", _num("composite"), _num("flow"),
           _num("hub", fmt=".4f"), _num("skip"), _num("self_attn", "self"), _num("flow_scaled"), _num("hub_scaled"),
           _num("skip_scaled")]
    type_color = alt.Color("functional_type:N", title="functional type",
                           scale=alt.Scale(domain=HEAD_TYPES, range=["#4c78a8", "#f58518", "#54a24b", "#b279a2"]))
    bars = alt.Chart(_guard(frame.filter(pl.col("rank") <= TOP_RANKED), title)).mark_bar().encode(
        y=alt.Y("head_label:N", sort=alt.EncodingSortField("rank"), title=None),
        x=alt.X("composite:Q", title="composite score",
                scale=alt.Scale(domain=[0, 1])),
        color=type_color, tooltip=tip).properties(width=260, height=alt.Step(14))
    bars = _facet(bars.properties(title=f"top {TOP_RANKED} heads"), panels)
    if len(panels) > 1:  # each run's own ranking order
        bars = bars.resolve_scale(y="independent")
    grid = alt.Chart(_guard(frame, title)).mark_rect().encode(
        x=alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)), y=alt.Y("layer:O", title="layer"),
        color=alt.Color("composite:Q", title="composite", scale=alt.Scale(scheme="greens", domain=[0, 1])),
        tooltip=tip).properties(width=alt.Step(22), height=alt.Step(22))
    grid = _facet(grid.properties(title="every head"), panels)
    return alt.hconcat(bars, grid).resolve_scale(color="independent").properties(title=_title(
        title, "composite = 0.4 flow + 0.4 hub + 0.2 skip, each min-max scaled over the run's heads; flow: "
               "previous-thought attention, hub: variance of normalized incoming attention, skip: T5 → T0..T2",
        _notes(runs)))


# --- two runs --------------------------------------------------------------------------------------------
def run_comparison(con, run: str, vs: str | None = None):
    """Run A against run B on their shared problems, per thought and per corruption (run_comparison)."""
    title = "Run A vs run B on shared problems"
    if vs is None:
        return _empty(title, "pass --vs RUN to compare two runs")
    runs = load_runs(con, run, vs)
    both_multi = all(len(v) > 1 for v in runs.patch_layers.values())
    agg = f"""
        SELECT patch_layer_a, patch_layer_b, thought, method, sigma, count(DISTINCT problem_id) AS problems,
               count(*) FILTER (WHERE base_correct_a) AS n_a, count(*) FILTER (WHERE failed_a) AS failures_a,
               count(*) FILTER (WHERE base_correct_b) AS n_b, count(*) FILTER (WHERE failed_b) AS failures_b,
               sum(kl_a) AS kl_sum_a, count(kl_a) AS kl_n_a, sum(kl_b) AS kl_sum_b, count(kl_b) AS kl_n_b,
               bool_and(same_convention) AS same_convention
        FROM run_comparison
        WHERE run_a = $a AND run_b = $b AND method NOT IN ('baseline', 'clean')
              {"AND patch_layer_a = patch_layer_b" if both_multi else ""}
        GROUP BY ALL"""
    frame = con.sql(agg, params={"a": run, "b": vs}).pl()
    if frame.is_empty():
        return _empty(title, "the two runs share no problems")
    keys = ["patch_layer_a", "patch_layer_b"]
    per_thought = con.sql(f"""
        WITH agg AS ({agg}),
        side AS (
            SELECT $a AS run_id, patch_layer_a, patch_layer_b, thought, problems, n_a AS n, failures_a AS failures,
                   kl_sum_a AS kl_sum, kl_n_a AS kl_n FROM agg
            UNION ALL
            SELECT $b, patch_layer_a, patch_layer_b, thought, problems, n_b, failures_b, kl_sum_b, kl_n_b FROM agg)
        SELECT run_id, patch_layer_a, patch_layer_b, thought, 'T' || thought AS thought_name,
               max(problems) AS problems, sum(n)::BIGINT AS n, sum(failures)::BIGINT AS failures,
               sum(failures) / nullif(sum(n), 0) AS failure_rate, wilson_low(sum(failures), sum(n)) AS ci_low,
               wilson_high(sum(failures), sum(n)) AS ci_high, sum(kl_sum) / nullif(sum(kl_n), 0) AS kl
        FROM side GROUP BY ALL""", params={"a": run, "b": vs}).pl()
    per_thought = per_thought.with_columns(
        run=pl.col("run_id").replace_strict(runs.labels, return_dtype=pl.String),
        panel=pl.format("A L{} / B L{}", "patch_layer_a", "patch_layer_b"))
    panels = per_thought.sort(keys)["panel"].unique(maintain_order=True).to_list()
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)}
    x = alt.X("thought_name:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0))
    tip = ["run:N", "panel:N", "thought_name:N", "problems:Q", "n:Q", "failures:Q", _pct("failure_rate"),
           _pct("ci_low", "95% low"), _pct("ci_high", "95% high"), _num("kl", "mean KL (answer)")]
    bars = alt.Chart().mark_bar(opacity=0.85).encode(
        x=x, y=alt.Y("failure_rate:Q", title="failure rate (95% Wilson)", axis=PCT), color=_run_color(runs),
        tooltip=tip, **offset)
    err = alt.Chart().mark_rule(color="#222").encode(x=x, y="ci_low:Q", y2="ci_high:Q", **offset)
    rates = _facet(alt.layer(bars, err, data=_guard(per_thought, title)).properties(width=300, height=220), panels)
    kl = _facet(alt.Chart(per_thought).mark_bar(opacity=0.85).encode(
        x=x, y=alt.Y("kl:Q", title="mean KL at the answer (nats)"), color=_run_color(runs), tooltip=tip, **offset)
        .properties(width=300, height=220), panels)
    scatter_frame = frame.with_columns(
        rate_a=pl.col("failures_a") / pl.col("n_a"), rate_b=pl.col("failures_b") / pl.col("n_b"),
        thought_name=pl.format("T{}", "thought"),
        condition=pl.Series([condition_label(m, s) for m, s in zip(frame["method"], frame["sigma"])],
                            dtype=pl.String))
    diagonal = alt.Chart(pl.DataFrame({"v": [0.0, 1.0]})).mark_line(color="#aaa", strokeDash=[4, 4]).encode(
        x="v:Q", y="v:Q")
    points = alt.Chart(_guard(scatter_frame, title)).mark_point(filled=True, size=50, opacity=0.8).encode(
        x=alt.X("rate_a:Q", title="failure rate, run A", axis=PCT, scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("rate_b:Q", title="failure rate, run B", axis=PCT, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("thought_name:N", sort=THOUGHTS, title="thought", scale=alt.Scale(scheme="viridis")),
        shape=alt.Shape("method:N", title="method"),
        tooltip=["thought_name:N", "condition:N", "patch_layer_a:O", "patch_layer_b:O", "problems:Q", "n_a:Q",
                 "failures_a:Q", _pct("rate_a", "rate A"), "n_b:Q", "failures_b:Q", _pct("rate_b", "rate B")])
    scatter = (diagonal + points).properties(width=240, height=240, title="every thought x corruption")
    note = "" if frame["same_convention"].all() else "the runs use different position conventions (legacy)"
    return alt.hconcat(rates, kl, scatter).resolve_scale(color="independent").properties(title=_title(
        title, f"{runs.labels[run]} vs {runs.labels[vs]}; each run's failure rate among its own baseline-correct "
               "trials on the problems both ran; corruptions pooled, clean control left out", note))


def model_comparison(con, run: str, vs: str | None = None):
    """Each run's own summary side by side: accuracy and failure rate by thought (model_comparison)."""
    runs = load_runs(con, run, vs)
    title = "Runs side by side" if runs.pair else "Run summary"
    frame = rows(con, "SELECT * FROM model_comparison WHERE {runs}", runs)
    if frame.is_empty():
        return _empty(title, "no summary for this run")
    per = frame.unpivot(on=[f"failure_rate_t{k}" for k in range(6)], index=["run", "run_id", "problems"],
                        variable_name="thought", value_name="rate")
    per = per.with_columns(thought=pl.col("thought").str.replace("failure_rate_t", "T"))
    overall = frame.select("run", "run_id", "problems", "baseline_accuracy", "n", "failures", "failure_rate",
                           "ci_low", "ci_high", "mean_kl", "model_name", "dataset_name")
    offset = {"xOffset": alt.XOffset("run:N", sort=runs.label_order)} if runs.pair else {}
    color = _run_color(runs) if runs.pair else alt.value(RUN_COLORS[0])
    thought_bars = alt.Chart(per).mark_bar(opacity=0.85).encode(
        x=alt.X("thought:N", sort=THOUGHTS, title="corrupted thought", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("rate:Q", title="failure rate", axis=PCT), color=color,
        tooltip=["run:N", "thought:N", "problems:Q", _pct("rate", "failure rate")], **offset,
    ).properties(width=300, height=200, title="failure rate by thought (each run's own problems)")
    y = alt.Y("run:N", sort=runs.label_order, title=None, axis=alt.Axis(labelLimit=320))
    tip = ["run:N", "model_name:N", "dataset_name:N", "problems:Q", _pct("baseline_accuracy"), "n:Q", "failures:Q",
           _pct("failure_rate"), _pct("ci_low", "95% low"), _pct("ci_high", "95% high"), _num("mean_kl", "mean KL")]
    acc = alt.Chart(overall).mark_bar().encode(
        x=alt.X("baseline_accuracy:Q", title="baseline accuracy",
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1]),
                scale=alt.Scale(domain=[0, 1])),
        y=y, color=color, tooltip=tip).properties(width=220, height=alt.Step(24), title="baseline accuracy")
    fail = alt.layer(
        alt.Chart().mark_bar().encode(x=alt.X("failure_rate:Q", title="failure rate (95% Wilson)", axis=PCT),
                                      y=y, color=color, tooltip=tip),
        alt.Chart().mark_rule(color="#222").encode(x="ci_low:Q", x2="ci_high:Q", y=y),
        data=overall).properties(width=220, height=alt.Step(24), title="all corruptions")
    return alt.hconcat(thought_bars, alt.vconcat(acc, fail)).properties(title=_title(
        title, "from model_comparison: every run over all of its own problems (runs need not share problems)",
        _notes(runs)))


# --- the list the report and the CLI use ---------------------------------------------------------------
@dataclass(frozen=True)
class ChartInfo:
    name: str  # file stem and anchor
    heading: str
    function: Callable
    views: tuple[str, ...]
    caption: str
    pair_only: bool = False


CHARTS: list[ChartInfo] = [
    ChartInfo("importance_by_thought", "Importance by thought", importance_by_thought, ("token_importance",),
              "How often corrupting each continuous thought flips a correct answer, with 95% Wilson intervals."),
    ChartInfo("thought_method_heatmap", "Thought x corruption", thought_method_heatmap, ("importance_matrix",),
              "The same failure rate split by corruption method and noise level: which thoughts break under "
              "which corruption."),
    ChartInfo("problem_thought_heatmap", "Problem x thought", problem_thought_heatmap, ("int_problem_importance", "stg_problems"),
              "Importance per problem: whether a few problems or all of them drive a thought's failure rate, "
              "grouped by difficulty."),
    ChartInfo("attention_vs_importance", "Attention vs importance", attention_vs_importance, ("attention_importance", "layer_correlation"),
              "Does the answer-predicting EOT position attend more to the thoughts that matter? One panel per "
              "layer."),
    ChartInfo("correlation_by_layer", "Correlation by layer", correlation_by_layer, ("layer_correlation",),
              "Attention-importance correlation by layer, pooled and within problems, and per thought."),
    ChartInfo("difficulty_strata", "Difficulty strata", difficulty_strata, ("difficulty_strata",),
              "Accuracy, importance and the attention-importance correlation by number of solution steps."),
    ChartInfo("method_effects", "KL and disruption by corruption", method_effects, ("method_comparison",),
              "Failure rate, KL divergence at the answer and attention disruption for every corruption."),
    ChartInfo("top_head_matrices", "Top heads' attention matrices", top_head_matrices, ("flow_matrix", "head_metrics"),
              "Where the top-ranked heads look: mean attention from each thought (and EOT) to each earlier "
              "position."),
    ChartInfo("layer_matrices", "Attention matrices by layer", layer_matrices, ("flow_matrix",),
              "The same matrices averaged over the heads of each layer."),
    ChartInfo("hub_flow_skip", "Hubs, flow and skips", hub_flow_skip, ("hub_scores", "sequential_flow", "self_attention",
                                               "skip_connections"),
              "Which thoughts later thoughts attend to (hubs), and how much each thought attends to the previous "
              "one, to itself, and from T5 back to T0..T2."),
    ChartInfo("head_ranking", "Head ranking", head_ranking, ("head_metrics",),
              "Heads ranked by a composite of sequential flow, hub and skip scores, with their functional type."),
    ChartInfo("run_comparison", "Run A vs run B", run_comparison, ("run_comparison",),
              "Run A and run B on the problems both ran: failure rates with intervals, KL, and every "
              "thought x corruption against the diagonal.", pair_only=True),
    ChartInfo("model_comparison", "Runs side by side", model_comparison, ("model_comparison",),
              "Each run's own summary side by side, whatever problems they ran.", pair_only=True),
]
