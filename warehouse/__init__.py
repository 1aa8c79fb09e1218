"""The warehouse: every experiment ever run, in one DuckLake folder (SPEC 6; see warehouse/lake.py).

Write with the store API (`open_warehouse`, `begin_run`, `append_problem`, `finish_run`, ...);
read with `python cli.py query`, any DuckDB client, or `engine(path)` for SQLAlchemy/pandas.
"""
from warehouse.errors import RunBusy, RunClosed, RunDamaged, UnknownRun, WarehouseError
from warehouse.sa import engine
from warehouse.store import (
    Warehouse,
    begin_run,
    committed_problems,
    delete_run,
    finish_run,
    list_runs,
    open_warehouse,
    resolve_run,
    resume_run,
    vacuum,
)
from warehouse.views import apply_views

__all__ = [
    "RunBusy",
    "RunClosed",
    "RunDamaged",
    "UnknownRun",
    "Warehouse",
    "WarehouseError",
    "apply_views",
    "begin_run",
    "committed_problems",
    "delete_run",
    "engine",
    "finish_run",
    "list_runs",
    "open_warehouse",
    "resolve_run",
    "resume_run",
    "vacuum",
]
