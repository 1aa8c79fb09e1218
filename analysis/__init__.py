"""Analysis of a warehouse's runs: statistics, comparisons, charts and the report, as values.

Every function takes run handles (`warehouse.handle.Run`) and returns values: dataclasses of polars
frames, Altair charts, the paths written. Text is formatted separately (what the CLI prints):

    from warehouse import open_warehouse
    from analysis import charts, compare_runs, run_stats, write_report

    wh = open_warehouse("results/warehouse", read_only=True)
    run = wh.run("latest")
    stats = run_stats(run)                     # RunStats: importance, methods, correlation, strata, flow, ...
    print(format_stats(stats))
    cmp = compare_runs(wh.run("2d32"), run)    # RunComparison: by_thought, by_condition, flips
    chart = charts.importance_by_thought(run)  # an Altair chart (charts.enable_offline() in Jupyter offline)
    write_report(run, out="results/charts")    # the chart files and report.html
    probe_run(wh_path, "latest")               # linear probes on the run's states (writes probe_results)
    closing_table(run)                         # what `run` prints at the end: accuracy, importance

The numbers come from the SQL views (queries/); this package adds only what SQL lacks (p-values,
bootstrap and permutation intervals) and the presentation. It imports `warehouse` and nothing else of
the project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warehouse.lazy import exports

if TYPE_CHECKING:
    from analysis import charts
    from analysis.charts import charts_for
    from analysis.closing import ClosingTable, closing_table, format_closing_table
    from analysis.compare import RunComparison, compare_runs, format_comparison
    from analysis.export import parse_formats
    from analysis.probes import ProbeScore, best_probes, fit_probe, format_probes, probe_run
    from analysis.report import write_report
    from analysis.stats import RunStats, format_stats, run_stats

# Where each public name lives: imported on first use, so `cli.py run` (the closing table) does not pay
# for Altair and the charts.
_HOMES = {
    "charts": "analysis.charts",
    "ClosingTable": "analysis.closing",
    "closing_table": "analysis.closing",
    "format_closing_table": "analysis.closing",
    "RunComparison": "analysis.compare",
    "compare_runs": "analysis.compare",
    "format_comparison": "analysis.compare",
    "write_report": "analysis.report",
    "charts_for": "analysis.charts",
    "parse_formats": "analysis.export",
    "ProbeScore": "analysis.probes",
    "best_probes": "analysis.probes",
    "fit_probe": "analysis.probes",
    "format_probes": "analysis.probes",
    "probe_run": "analysis.probes",
    "RunStats": "analysis.stats",
    "format_stats": "analysis.stats",
    "run_stats": "analysis.stats",
}

# `charts` is the submodule itself; values are not cached in the namespace, and dir() lists __all__ only.
__getattr__, __dir__, _names = exports(__name__, _HOMES, cache=False, dir_lists_all_only=True)
del exports, _names

# Written out (the same names as _HOMES) so that ruff and mypy read the imports above as re-exports.
__all__ = [
    "ClosingTable",
    "ProbeScore",
    "RunComparison",
    "RunStats",
    "charts",
    "charts_for",
    "closing_table",
    "compare_runs",
    "fit_probe",
    "format_closing_table",
    "format_comparison",
    "best_probes",
    "format_probes",
    "format_stats",
    "parse_formats",
    "probe_run",
    "run_stats",
    "write_report",
]
