"""`python cli.py charts`: every chart of a run (or a pair) as files, and `report.html` gathering them.

The report is one self-contained page: the Vega bundle is inlined once, each chart's spec sits in a
JSON script element, and a small script renders them all as SVG, so the page opens from disk with no
network. Each figure records `data-status` (`rendered` or `error`) once vega-embed settles, and the
body gets `data-charts-done` when all have, which is what the browser test reads.
"""
from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from analysis.charts import CHARTS, ChartInfo
from analysis.export import EMBED_OPTIONS, FORMATS, chart_spec, javascript_bundle, script_json, write_chart
from analysis.report_tables import Table, key_tables, metadata_html, table_html
from warehouse.store import open_warehouse

DEFAULT_OUT = "results/charts"

STYLE = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 24px 32px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin: 32px 0 6px; border-bottom: 1px solid #ddd; }
.lede { color: #555; margin-top: 0; } nav a { margin-right: 12px; font-size: 13px; }
figure { margin: 0 0 12px; } figcaption { color: #444; font-size: 14px; margin: 0 0 8px; max-width: 1100px; }
figcaption code, td code { background: #f3f3f3; padding: 0 3px; }
.vis { overflow-x: auto; } .failed .vis { color: #b00; white-space: pre-wrap; font-family: monospace; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; } th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.null { color: #aaa; text-align: center; }
table.meta td, table.meta td.num { font-family: monospace; font-size: 12px; text-align: left; } details { margin: 4px 0; font-size: 13px; }
pre { background: #f8f8f8; padding: 8px; max-height: 360px; overflow: auto; }
"""

RENDER = """
(function () {
  const options = %s;
  const figures = Array.from(document.querySelectorAll("figure.chart"));
  const jobs = figures.map(function (figure) {
    const target = figure.querySelector(".vis");
    const spec = JSON.parse(figure.querySelector("script.spec").textContent);
    return vegaEmbed(target, spec, options).then(function () {
      figure.dataset.status = "rendered";
    }).catch(function (error) {
      figure.dataset.status = "error";
      figure.classList.add("failed");
      target.textContent = "This chart failed to render: " + error;
    });
  });
  Promise.all(jobs).then(function () {
    const failed = figures.filter(function (f) { return f.dataset.status !== "rendered"; }).length;
    document.body.dataset.chartsDone = String(figures.length - failed);
    document.body.dataset.chartsFailed = String(failed);
    document.body.dataset.height = String(document.documentElement.scrollHeight);
  });
})();
"""


def _figure(info: ChartInfo, spec: dict) -> str:
    views = ", ".join(f"<code>{v}</code>" for v in info.views)
    return (f"<section id='{info.name}'><h2>{html.escape(info.heading)}</h2>"
            f"<figure class='chart' data-chart='{info.name}'>"
            f"<figcaption>{html.escape(info.caption)} From the view{'s' if len(info.views) > 1 else ''} "
            f"{views}.</figcaption><div class='vis'></div>"
            f"<script type='application/json' class='spec'>{script_json(spec)}</script></figure></section>")


def _table_section(table: Table) -> str:
    return (f"<section id='table-{table.key}'><h3>{html.escape(table.title)} "
            f"<small>(<code>{table.view}</code>)</small></h3>{table_html(table)}</section>")


def render_report(charts: list[tuple[ChartInfo, dict]], runs: list[dict], tables: list[Table]) -> str:
    """The whole page as a string: metadata, every chart with its caption, the key tables."""
    ids = [r["run_id"] for r in runs]
    title = f"CODI warehouse report: {ids[0]}" + (f" vs {ids[1]}" if len(ids) > 1 else "")
    nav = "".join(f"<a href='#{info.name}'>{html.escape(info.heading)}</a>" for info, _ in charts)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lede = ("Run A and run B side by side." if len(ids) > 1 else "One run.") + \
        f" Every chart reads the warehouse's SQL views; generated {generated}. Hover a mark for its numbers."
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script>{javascript_bundle()}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="lede">{html.escape(lede)}</p>
<nav><a href="#runs">Runs</a>{nav}<a href="#tables">Key tables</a></nav>
<section id="runs"><h2>Runs</h2>{metadata_html(runs)}</section>
{''.join(_figure(info, spec) for info, spec in charts)}
<section id="tables"><h2>Key tables</h2>{''.join(_table_section(t) for t in tables)}</section>
<noscript>The charts need JavaScript; the PNG and SVG files next to this page show the same charts.</noscript>
<script>{RENDER % script_json(EMBED_OPTIONS)}</script>
</body>
</html>
"""


def build_charts(con, run_id: str, vs_id: str | None = None) -> list[tuple[ChartInfo, object]]:
    """Every chart that applies: the pair-only ones only when there is a second run."""
    return [(info, info.function(con, run_id, vs_id)) for info in CHARTS if vs_id or not info.pair_only]


def write_charts(db, run: str = "latest", vs: str | None = None, out: str | Path = DEFAULT_OUT,
                 formats=FORMATS) -> dict:
    """Write each chart as `out/NAME.{html,png,svg}` (as asked) and `out/report.html`; returns what was written."""
    store = open_warehouse(db, read_only=True)
    run_id = store.resolve_run(run)
    vs_id = store.resolve_run(vs) if vs else None
    out = Path(out)
    with store.reader(exclude_damaged=True, require=tuple(r for r in (run_id, vs_id) if r)) as con:
        out.mkdir(parents=True, exist_ok=True)  # only once the runs are known to be readable
        con.execute("SET enable_progress_bar = false")
        charts = build_charts(con, run_id, vs_id)
        tables = key_tables(con, [r for r in (run_id, vs_id) if r])
    runs = [store.show_run(r) for r in (run_id, vs_id) if r]
    files = []
    for info, chart in charts:
        files += write_chart(chart, out / info.name, formats, title=info.heading)
    report = out / "report.html"
    report.write_text(render_report([(info, chart_spec(chart)) for info, chart in charts], runs, tables),
                      encoding="utf-8")
    return {"run_id": run_id, "vs": vs_id, "report": str(report), "charts": [info.name for info, _ in charts],
            "files": [str(f) for f in files] + [str(report)]}
