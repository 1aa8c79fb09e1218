"""What the warehouse CLI commands do (`runs`, `views`), each returning a payload and its text form."""
from __future__ import annotations

import pyarrow as pa

from warehouse.output import render_table
from warehouse.store import open_warehouse
from warehouse.views import list_views

_RUN_SUMMARY = ("run_id", "status", "model_name", "started_at", "finished_at", "dataset_name",
                "n_problems_planned", "convention", "parent_run_id", "config_hash", "weights_sha256",
                "code_version", "device", "dtype", "seed", "patch_layers", "methods", "sigmas", "error")


def runs_list(db) -> tuple[dict, str]:
    runs = open_warehouse(db, read_only=True).list_runs()
    text = render_table(pa.Table.from_pylist(runs)) if runs else "no runs yet\n"
    return {"runs": runs}, text


def runs_show(db, spec: str) -> tuple[dict, str]:
    run = open_warehouse(db, read_only=True).show_run(spec)
    width = max(map(len, _RUN_SUMMARY))
    lines = [f"{key:<{width}}  {run[key]}" for key in _RUN_SUMMARY if run.get(key) is not None]
    lines += [f"{'rows.' + table:<{width}}  {count:,}" for table, count in run["rows"].items()]
    lines += [f"{'damaged':<{width}}  {line}" for line in run.get("damaged_files", [])]
    return run, "\n".join(lines) + "\n"


def runs_delete(db, spec: str) -> tuple[dict, str]:
    removed = open_warehouse(db).delete_run(spec)
    counts = ", ".join(f"{n:,} {t}" for t, n in removed.items() if t != "run_id")
    return {"deleted": removed}, f"deleted run {removed['run_id']} ({counts})\n"


def runs_vacuum(db, days: float) -> tuple[dict, str]:
    done = open_warehouse(db).vacuum(days)
    return done, (f"expired {done['snapshots_expired']} snapshots; removed {done['files_removed']} files no "
                  f"snapshot needs and {done['orphans_removed']} uncommitted files\n")


def init_warehouse(db, catalog: str) -> str:
    store = open_warehouse(db, catalog=catalog)
    store.close()
    return f"warehouse {store.warehouse_id} at {store.path} ({store.catalog.kind} catalog)\n"


def views_list(db) -> tuple[dict, str]:
    store = open_warehouse(db)  # opening for writing applies the latest queries/*.sql first
    with store.reader() as con:
        found = list_views(con)
    width = max((len(v["view"]) for v in found), default=0)
    return {"views": found}, "".join(f"{v['view']:<{width}}  {v['kind']:<5}  {v['description']}\n" for v in found)
