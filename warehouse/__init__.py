"""The warehouse: every experiment ever run, in one DuckLake folder (SPEC 6; see warehouse/lake.py).

The ground floor of the project: it owns the table schemas (`warehouse.schema`) and the vocabulary
every layer shares (`warehouse.vocab`), and imports no other project package.

    wh = open_warehouse("results/warehouse")      # a Warehouse (created unless read_only=True)
    run = wh.run("latest")                        # a Run handle: lineage, views, results, attention
    wh.runs(); wh.sql("SELECT ...")               # every run; any read-only query, as polars

Writers use the Warehouse's methods (`begin_run`, `append_problems`, `finish_run`, ...). Any DuckDB
client can read the folder too (`python cli.py query`, or `sqlalchemy_engine(path)` for SQLAlchemy and
pandas). Names are imported on first use, so `import warehouse` stays cheap; no exported name is
also a submodule's (importing a submodule sets the package attribute of that name).
"""

from __future__ import annotations

from warehouse.lazy import exports

_EXPORTS = {
    # the notebook face
    "Warehouse": "warehouse.store",
    "open_warehouse": "warehouse.store",
    "Run": "warehouse.handle",
    "apply_views": "warehouse.views",
    "sqlalchemy_engine": "warehouse.sa:engine",
    "engine": "warehouse.sa",  # the same as sqlalchemy_engine (older name)
    # errors
    "RunBusy": "warehouse.errors",
    "RunClosed": "warehouse.errors",
    "RunDamaged": "warehouse.errors",
    "UnknownRun": "warehouse.errors",
    "WarehouseError": "warehouse.errors",
    "SchemaError": "warehouse.migrate",
    "QueryTimeout": "warehouse.guard",
    # commands: values, and their text (what cli.py prints)
    "runs_list": "warehouse.commands",
    "runs_show": "warehouse.commands",
    "runs_delete": "warehouse.commands",
    "runs_vacuum": "warehouse.commands",
    "runs_label": "warehouse.commands",
    "format_labels": "warehouse.output",
    "parse_tags": "warehouse.labels",
    "init_warehouse": "warehouse.commands",
    "views_list": "warehouse.commands",
    "format_runs": "warehouse.output",
    "format_run": "warehouse.output",
    "format_deleted": "warehouse.output",
    "format_vacuum": "warehouse.output",
    "format_init": "warehouse.output",
    "format_upgrade": "warehouse.output",
    "format_views": "warehouse.output",
    "upgrade_warehouse": "warehouse.upgrade:upgrade",
    "run_query": "warehouse.query",
    "query_command": "warehouse.query",
    "check_read_only": "warehouse.guard",
    # benchmarks
    "bench_warehouse": "warehouse.bench:run_bench",
    "bench_warehouse_lines": "warehouse.bench:summary_lines",
    "bench_query_views": "warehouse.bench_views:run_bench",
    "bench_query_views_lines": "warehouse.bench_views:summary_lines",
}

__getattr__, __dir__, __all__ = exports(__name__, _EXPORTS, sort=True)
del exports
