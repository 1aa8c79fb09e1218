"""`python cli.py charts`: every chart of a run (or a pair) as files, and `report.html` gathering them.

    write_report(run, out="results/charts", vs=None)   # -> the paths written, report.html last
    write_report(run, progress=lambda done, total, name: print(f"{done}/{total} {name}"))

The report is one self-contained page (analysis/templates/report.html.j2): the Vega bundle is inlined
once, each chart's spec sits in a JSON script element, and a small script (render.js) renders them all
as SVG, so the page opens from disk with no network. Each figure records `data-status` (`rendered` or
`error`) once vega-embed settles, and the body gets `data-charts-done` when all have, which is what the
browser test reads.

The page opens with the findings: each run's RunStats.findings() (analysis.stats.run_stats, the sentences
`python cli.py stats` prints), and the key tables are read from the same RunStats (analysis/report_tables.py),
so the report and `stats` give the same numbers. `write_report(..., stats=[stats_a, stats_b])` reuses
RunStats already computed (else run_stats runs once per run, its bootstraps and permutations included).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from analysis.charts._base import Chart
from analysis.charts._data import load_runs
from analysis.charts.registry import ChartInfo, build_chart, charts_for, run_families, run_readouts
from analysis.export import EMBED_OPTIONS, FORMATS, chart_spec, javascript_bundle, write_chart
from analysis.frames import reading
from analysis.report_tables import META_FIELDS, findings, key_tables, run_settings
from analysis.stats import RunStats, run_stats
from analysis.templating import render
from warehouse.handle import Run

DEFAULT_OUT = "results/charts"
# progress(done, total, name): called before each step of write_report (reading the views, each chart,
# the page), with `done` steps finished of `total`.
Progress = Callable[[int, int, str], None]


def render_report(
    charts: list[tuple[ChartInfo, dict[str, Any]]],
    runs: list[dict[str, Any]],
    stats: Sequence[RunStats],
) -> str:
    """The whole page as a string: the findings, metadata, every chart (its spec) with its caption, the key
    tables (the findings and the tables from `stats`, one RunStats per run, in the order of `runs`)."""
    ids = [r["run_id"] for r in runs]
    title = f"CODI warehouse report: {ids[0]}" + (f" vs {ids[1]}" if len(ids) > 1 else "")
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lede = ("Run A and run B side by side." if len(ids) > 1 else "One run.") + (
        f" Every chart reads the warehouse's SQL views; the findings and key tables add the p-values and"
        f" intervals of python cli.py stats; generated {generated}. Hover a mark for its numbers."
    )
    shown = [
        {**run, "config_text": json.dumps(run.get("config_json"), indent=2, default=str)} for run in runs
    ]
    return render(
        "report.html.j2",
        title=title,
        lede=lede,
        charts=charts,
        runs=shown,
        fields=META_FIELDS,
        findings=findings(stats),
        settings=stats[0].settings,
        tables=key_tables(stats),
        options=EMBED_OPTIONS,
        bundle=javascript_bundle(),
    )


def build_charts(
    con: duckdb.DuckDBPyConnection, run_id: str, vs_id: str | None = None
) -> list[tuple[ChartInfo, Chart]]:
    """Every chart that applies, on one connection: the pair-only ones only when there is a second run, an
    intervention family's or a readout's only when a run has it; a chart of baseline attention that is the
    same for both runs is drawn once (registry.build_chart)."""
    runs = load_runs(con, run_id, vs_id)
    infos = charts_for(vs_id is not None, run_families(con, runs.ids), run_readouts(con, runs.ids))
    return [(info, build_chart(info, con, runs)) for info in infos]


def write_report(
    run: Run,
    out: str | Path = DEFAULT_OUT,
    vs: Run | None = None,
    formats: Iterable[str] = FORMATS,
    progress: Progress | None = None,
    stats: Sequence[RunStats] | None = None,
) -> list[Path]:
    """Write each chart as `out/NAME.{html,png,svg}` (as asked) and `out/report.html`; returns the paths
    written, report.html last. `progress(done, total, name)`, if given, is called as each step begins
    (`views`, then each chart's name, `statistics`, then `report.html`), for a caller that shows how far it
    is. `stats`: the RunStats of run (and vs), if already computed; else run_stats computes them."""
    formats = tuple(formats)
    out = Path(out)
    ids = [r.run_id for r in (run, vs) if r is not None]
    if stats is not None and [s.run_id for s in stats] != ids:
        raise ValueError(f"stats are for {[s.run_id for s in stats]}, the report for {ids}")
    step = progress or (lambda done, total, name: None)
    with reading(run, vs) as con:
        infos = charts_for(vs is not None, run_families(con, ids), run_readouts(con, ids))
        total = len(infos) + 3
        step(0, total, "views")
        out.mkdir(parents=True, exist_ok=True)  # only once the runs are known to be readable
        charts = build_charts(con, run.run_id, vs.run_id if vs is not None else None)
        settings = run_settings(con, ids)
    runs = [{**r.lineage, **settings.get(r.run_id, {})} for r in (run, vs) if r is not None]
    files: list[Path] = []
    for done, (info, chart) in enumerate(charts, start=1):
        step(done, total, info.name)
        files += write_chart(chart, out / info.name, formats, title=info.heading)
    step(total - 2, total, "statistics")
    if stats is None:
        stats = [run_stats(r) for r in (run, vs) if r is not None]
    step(total - 1, total, "report.html")
    report = out / "report.html"
    report.write_text(
        render_report([(info, chart_spec(chart)) for info, chart in charts], runs, stats), encoding="utf-8"
    )
    step(total, total, "done")
    return [*files, report]
