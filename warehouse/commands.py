"""What the warehouse CLI commands do (`runs`, `init`, `views`), as functions returning values.

Each takes the warehouse folder and returns plain data (the `--json` form of the command); the text
the CLI prints is made from that by the `format_*` functions of warehouse/output.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from warehouse.store import _UNSET, open_warehouse
from warehouse.views import list_views


def runs_list(db: str | os.PathLike, tags: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every run (with `tags`: those carrying all of them), oldest first: labels, status, model, problems
    committed of planned, patch layers, methods, seed, start and wall-clock seconds."""
    with open_warehouse(db, read_only=True) as store:
        return store.list_runs(tags)


def runs_show(db: str | os.PathLike, spec: str) -> dict[str, Any]:
    """One run (id, unique prefix or `latest`): its runs row, row counts per table and damaged files."""
    with open_warehouse(db, read_only=True) as store:
        return store.show_run(spec)


def runs_delete(db: str | os.PathLike, spec: str) -> dict[str, Any]:
    """Remove a run and all its rows; returns its id and the rows removed per table."""
    with open_warehouse(db) as store:
        return store.delete_run(spec)


def runs_label(
    db: str | os.PathLike,
    spec: str,
    *,
    name: str | None = _UNSET,
    tags: Mapping[str, str] | None = None,
    untag: Iterable[str] = (),
    note: str | None = _UNSET,
) -> dict[str, Any]:
    """Change a run's name, tags (merged; `untag` removes keys) or note; returns its labels afterwards
    (`runs rename`, `runs tag`, `runs note`)."""
    with open_warehouse(db) as store:
        return store.annotate_run(spec, name=name, tags=tags, untag=untag, note=note)


def runs_vacuum(db: str | os.PathLike, days: float) -> dict[str, int]:
    """Expire snapshots older than `days` and delete the files no snapshot needs; returns the counts."""
    with open_warehouse(db) as store:
        return store.vacuum(days)


def init_warehouse(db: str | os.PathLike, catalog: str) -> dict[str, Any]:
    """Create (or open) the warehouse folder `db`; returns its id, path and catalog kind."""
    store = open_warehouse(db, catalog=catalog)
    store.close()
    return {"warehouse_id": store.warehouse_id, "path": str(store.path), "catalog": store.catalog.kind}


def views_list(db: str | os.PathLike) -> list[dict[str, str]]:
    """Every view and table of the warehouse (`view`, `kind`, `description`), after applying queries/*.sql
    (those it holds, in a folder this process cannot write)."""
    writable = not os.path.isdir(db) or os.access(db, os.W_OK)
    with open_warehouse(db, read_only=not writable) as store, store.reader() as con:
        return list_views(con)  # opening for writing applies queries/*.sql
