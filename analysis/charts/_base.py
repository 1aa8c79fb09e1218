"""Pieces every chart shares: titles, placeholders, run colours and dashes, facets, tooltips, the row guard,
and `draw`, which turns a chart builder (connection, Runs) into the public face (Run handles)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import altair as alt
import duckdb
import polars as pl

from analysis.charts._data import MAX_ROWS, RUN_COLORS, Runs, load_runs
from analysis.frames import reading
from warehouse.handle import Run

PCT = alt.Axis(format="%")
NO_ATTENTION = "no baseline attention captured for this run (--attention none, or a file without attention)"

Chart = alt.TopLevelMixin
Builder = Callable[[duckdb.DuckDBPyConnection, Runs], Chart]


def draw(build: Builder, run: Run, vs: Run | None = None) -> Chart:
    """Build one chart for `run` (and `vs`) on a read connection that refuses a damaged run."""
    with reading(run, vs) as con:
        return build(con, load_runs(con, run.run_id, vs.run_id if vs is not None else None))


def titled(text: str, *subtitle: str) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=[s for s in subtitle if s])


def with_note(chart: Chart, note: str) -> Chart:
    """The chart with `note` as the last line of its title's subtitle."""
    title = chart.title
    if isinstance(title, alt.TitleParams):
        subtitle = title.subtitle if isinstance(title.subtitle, list) else [title.subtitle]
        text = title.text
    else:
        subtitle, text = [], title
    lines = [s for s in subtitle if isinstance(s, str) and s]
    return chart.properties(title=alt.TitleParams(text=text, subtitle=[*lines, note]))


def empty(heading: str, message: str) -> alt.Chart:
    """A chart that says why it has nothing to show, instead of an empty frame."""
    return (
        alt.Chart(pl.DataFrame({"message": [message]}))
        .mark_text(align="left", x=0, fontSize=13, color="#777")
        .encode(text="message:N")
        .properties(title=titled(heading), width=520, height=30)
    )


def run_color(runs: Runs) -> alt.Color:
    return alt.Color(
        "run:N",
        scale=alt.Scale(domain=runs.label_order, range=RUN_COLORS),
        legend=alt.Legend(title="run", orient="bottom", direction="vertical", labelLimit=500),
    )


def run_dash(runs: Runs) -> alt.StrokeDash:
    """Run A solid, run B dashed (for line charts whose colour already means something else)."""
    return alt.StrokeDash(
        "run:N",
        sort=runs.label_order,
        title="run",
        legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=500, symbolStrokeColor="#333"),
    )


def facet(chart: Any, panels: list[str], columns: int | None = None) -> Any:
    """Facet by `panel` only when there is more than one panel."""
    if len(panels) <= 1:
        return chart
    return chart.facet(
        facet=alt.Facet(
            "panel:N", sort=panels, title=None, header=alt.Header(labelFontWeight="bold", labelLimit=400)
        ),
        columns=columns or len(panels),
    )


def notes(runs: Runs) -> str:
    return (
        "legacy run: positions are the research scripts' token indices, not our T0..T5 (SPEC 10)"
        if runs.legacy
        else ""
    )


def guard(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    """A chart query that forgot to aggregate fails here, loudly, instead of embedding millions of rows."""
    if frame.height > MAX_ROWS:
        raise ValueError(
            f"chart {what!r} would embed {frame.height} rows; aggregate in SQL (limit {MAX_ROWS})"
        )
    return frame


def pct(field: str, label: str | None = None) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", format=".1%", title=label or field)


def num(field: str, label: str | None = None, fmt: str = ".3f") -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", format=fmt, title=label or field)


def heat_text(
    base: alt.Chart,
    field: str,
    fmt: str,
    threshold: float,
    minimum: float | None = None,
    both_signs: bool = False,
) -> alt.Chart:
    """Cell labels over `base`'s cells, white on dark cells; cells below `minimum` stay unlabelled."""
    value = f"abs(datum.{field})" if both_signs else f"datum.{field}"
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text(f"{field}:Q", format=fmt),
        color=alt.condition(f"{value} > {threshold}", alt.value("white"), alt.value("#222")),
    )
    shown = f"isValid(datum.{field})" + (f" && datum.{field} >= {minimum}" if minimum is not None else "")
    return text.transform_filter(shown)
