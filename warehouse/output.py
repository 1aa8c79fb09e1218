"""Query results as a text table, CSV, JSON (an array of row objects) or Parquet.

CSV, JSON and Parquet are written by DuckDB's own writers (from an in-memory connection over the
Arrow result), so nested, decimal, binary and JSON columns come out the way DuckDB clients expect.
A file (`--out`) is written atomically: to a temporary file in its directory, then renamed over it,
so a failed or killed write never leaves a half file. `check_out_path` refuses an --out inside the
warehouse folder (symlinks and `..` resolved), before the query runs.

The `format_*` functions are the text forms of the values warehouse/commands.py returns (what the
CLI prints without --json).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import duckdb
import polars as pl
import pyarrow as pa

from warehouse.errors import WarehouseError
from warehouse.labels import format_tags
from warehouse.vocab import DEFAULT_METHODS, DEFAULT_SIGMAS

FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROWS = 1000
_COPY_OPTIONS = {
    "csv": "FORMAT csv, HEADER true",
    "json": "FORMAT json, ARRAY true",
    "parquet": "FORMAT parquet, COMPRESSION zstd",
}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def render_table(table: pa.Table, max_rows: int = TABLE_ROWS) -> str:
    """A readable text table; longer results are cut, with a note saying how to get every row."""
    shown = table.slice(0, max_rows)
    with pl.Config(
        tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=80, tbl_hide_dataframe_shape=True, tbl_width_chars=200
    ):
        text = str(pl.from_arrow(shown)) if shown.num_columns else "(no columns)"
    if table.num_rows > max_rows:
        text += f"\n({max_rows} of {table.num_rows} rows shown; use --format csv or parquet for all)"
    return text + "\n"


# --- text forms of the warehouse commands' values (warehouse/commands.py) ---------------------------
_RUN_SUMMARY = (
    "run_id",
    "name",
    "tags",
    "note",
    "status",
    "kind",
    "problems",
    "model_name",
    "started_at",
    "finished_at",
    "dataset_name",
    "n_problems_planned",
    "convention",
    "parent_run_id",
    "config_hash",
    "weights_sha256",
    "code_version",
    "device",
    "dtype",
    "threads",
    "wait_policy",
    "torch",
    "seed",
    "patch_layers",
    "methods",
    "sigmas",
    "error",
)
_KINDS = {
    "engine": "engine run (python cli.py run)",
    "legacy": "imported result file of the research scripts (ingest legacy)",
    "other": "written through the Python API",
}
LIST_WIDTH = 100  # `runs list` fits this many columns
_LIST_COLUMNS = ("id", "name", "status", "model", "done", "layers", "methods", "seed", "started", "took")
_SHRINKABLE = {"name": 8, "methods": 7, "model": 9}  # cut (with an ellipsis) in this order, down to these


def _span(layers: Sequence[int] | None) -> str:
    """Patch layers with runs of consecutive layers as a-b: 0-11, 3,6,9, 2-4,8."""
    if not layers:
        return "-"
    parts, start, prev = [], layers[0], layers[0]
    for layer in [*layers[1:], None]:
        if layer is not None and layer == prev + 1:
            prev = layer
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if layer is not None:
            start = prev = layer
    return ",".join(parts)


def _methods(run: Mapping[str, Any]) -> str:
    methods, sigmas = list(run.get("methods") or []), list(run.get("sigmas") or [])
    if not methods:
        return "-"
    if methods == list(DEFAULT_METHODS) and [float(x) for x in sigmas] == list(DEFAULT_SIGMAS):
        return "default"
    return ",".join(methods)


def _when(moment: dt.datetime | None, now: dt.datetime) -> str:
    """ls -l style: 11-30 12:48 this year, 2025-11-30 before (UTC)."""
    if moment is None:
        return "-"
    return moment.strftime("%m-%d %H:%M") if moment.year == now.year else moment.strftime("%Y-%m-%d")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _cut(text: str, width: int, middle: bool = False) -> str:
    """`text` in `width` characters: cut at the end (or, `middle`, in the middle: names that differ only
    at the end, `lr sweep 0.1` and `lr sweep 0.2`, stay apart) with an ellipsis."""
    if len(text) <= width:
        return text
    if middle and width >= 5:
        head = (width - 1) // 2
        return text[:head] + "\u2026" + text[len(text) - (width - 1 - head) :]
    return text[: max(width - 1, 0)] + "\u2026"


def runs_rows(runs: list[dict[str, Any]], now: dt.datetime | None = None) -> list[dict[str, str]]:
    """`runs list`'s cells, one dict per run (columns _LIST_COLUMNS)."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    for run in runs:
        planned, done = run.get("n_problems_planned"), run.get("problems_committed", 0)
        rows.append(
            {
                "id": run["run_id"],
                "name": run.get("name") or "",
                "status": run["status"],
                "model": run.get("model_name") or "-",
                "done": f"{done}/{planned}" if planned is not None else str(done),
                "layers": _span(run.get("patch_layers")),
                "methods": _methods(run),
                "seed": "-" if run.get("seed") is None else str(run["seed"]),
                "started": _when(run.get("started_at"), now),
                "took": _took(run.get("seconds")),
            }
        )
    return rows


def format_runs(
    runs: list[dict[str, Any]],
    tags: Mapping[str, str] | None = None,
    width: int = LIST_WIDTH,
    now: dt.datetime | None = None,
) -> str:
    """`runs list`: one line per run, at most `width` columns (long names are cut in the middle, method
    lists and model names at the end, with an ellipsis; `runs show RUN` and --json have everything).
    Methods `default`: the run's default set (zero,gauss,random,shuffle at sigmas 0.1,0.5,1,2); started:
    UTC; took: start to end."""
    if not runs:
        wanted = format_tags(tags)
        return f"no run is tagged {wanted}\n" if wanted else "no runs yet\n"
    rows = runs_rows(runs, now)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in _LIST_COLUMNS}

    def total(gap: int) -> int:
        return sum(widths.values()) + gap * (len(widths) - 1)

    gap = 2 if total(2) <= width else 1  # narrower gaps first, then cut the free-text columns
    for column, least in _SHRINKABLE.items():
        over = total(gap) - width
        if over > 0:
            widths[column] = max(least, widths[column] - over)

    def line(cells: Mapping[str, str]) -> str:
        cut = (_cut(cells[c], widths[c], middle=c == "name").ljust(widths[c]) for c in _LIST_COLUMNS)
        return (" " * gap).join(cut).rstrip()

    return "\n".join([line({c: c for c in _LIST_COLUMNS}), *map(line, rows)]) + "\n"


def _value(key: str, value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if key == "tags":
        return format_tags(value)
    if key == "kind":
        return _KINDS.get(value, value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).replace("\n", "\n" + " " * 20)


def format_run(run: Mapping[str, Any]) -> str:
    """`runs show`: a run's labels and lineage fields that are set, one per line, then its rows (torch: the
    version of its library_versions)."""
    run = {**run, "torch": (run.get("library_versions") or {}).get("torch")}
    width = max(map(len, _RUN_SUMMARY))
    lines = [
        f"{key:<{width}}  {_value(key, run[key])}"
        for key in _RUN_SUMMARY
        if run.get(key) is not None and run.get(key) != {}
    ]
    rows = run["rows"]
    lines.append(
        f"{'rows':<{width}}  {rows.get('results', 0):,} results, {rows.get('attention', 0):,} attention, "
        f"{rows.get('run_problems', 0):,} problems committed"
    )
    lines += [f"{'damaged':<{width}}  {line}" for line in run.get("damaged_files", [])]
    return "\n".join(lines) + "\n"


def format_labels(labels: Mapping[str, Any]) -> str:
    """`runs tag`, `runs note`, `runs rename`: the run's labels afterwards."""
    tags = format_tags(labels.get("tags")) or "(none)"
    lines = [
        f"run {labels['run_id']}",
        f"  name  {labels.get('name') or '(none)'}",
        f"  tags  {tags}",
        f"  note  {(labels.get('note') or '(none)').replace(chr(10), chr(10) + ' ' * 8)}",
    ]
    return "\n".join(lines) + "\n"


def format_deleted(removed: Mapping[str, Any]) -> str:
    """`runs delete`: the run removed and its rows per table."""
    counts = ", ".join(f"{n:,} {t}" for t, n in removed.items() if t != "run_id")
    return f"deleted run {removed['run_id']} ({counts})\n"


def format_vacuum(done: Mapping[str, int]) -> str:
    """`runs vacuum`: snapshots expired and files removed."""
    return (
        f"expired {done['snapshots_expired']} snapshots; removed {done['files_removed']} files no "
        f"snapshot needs and {done['orphans_removed']} uncommitted files\n"
    )


def format_init(info: Mapping[str, Any]) -> str:
    """`init`: the warehouse's id, folder and catalog kind."""
    return f"warehouse {info['warehouse_id']} at {info['path']} ({info['catalog']} catalog)\n"


def format_upgrade(copied: Mapping[str, int], target: str | os.PathLike) -> str:
    """`upgrade`: what warehouse.upgrade.upgrade copied into `target`."""
    return (
        f"copied {copied['runs']} runs ({copied['results']:,} results, "
        f"{copied['attention']:,} attention rows) "
        f"and {copied['problems']} problems into {target}; the old files are unchanged\n"
    )


def format_views(views: list[dict[str, str]]) -> str:
    """`views`: name, kind and description, one per line."""
    width = max((len(v["view"]) for v in views), default=0)
    return "".join(f"{v['view']:<{width}}  {v['kind']:<5}  {v['description']}\n" for v in views)


def _copy(table: pa.Table, fmt: str, path: str) -> None:
    con = duckdb.connect()
    try:
        con.register("result", table)
        escaped = path.replace("'", "''")
        # into the (temporary) file itself: DuckDB's own tmp_ file would outlive a failed write
        con.execute(f"COPY result TO '{escaped}' ({_COPY_OPTIONS[fmt]}, USE_TMP_FILE false)")
    finally:
        con.close()


def check_format(fmt: str, out: str | os.PathLike | None) -> None:
    """Refuse an unknown format, or parquet without --out (it is binary), before anything runs."""
    if fmt not in FORMATS:
        raise WarehouseError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "parquet" and not out:
        raise WarehouseError("--format parquet needs --out FILE")


def _same_as_any(path: Path, folder_stat: os.stat_result) -> bool:
    """Whether `path` or a folder above it is the warehouse folder (bind mounts, case-folding file
    systems)."""
    for candidate in (path, *path.parents):
        try:
            found = candidate.stat()
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (folder_stat.st_dev, folder_stat.st_ino):
            return True
    return False


def check_out_path(out: str | os.PathLike, warehouse: str | os.PathLike) -> Path:
    """The file `out` resolved (symlinks, `..`), refused in one line if it is the warehouse or inside it."""
    target = Path(os.path.realpath(out))
    folder = Path(os.path.realpath(warehouse))
    try:
        folder_stat = folder.stat()
    except OSError:
        folder_stat = None
    if target == folder or folder in target.parents or (folder_stat and _same_as_any(target, folder_stat)):
        raise WarehouseError(
            f"--out {out} is inside the warehouse {folder}, which query never writes; "
            "save the result somewhere else (e.g. results/query.csv)"
        )
    if target.is_dir():
        raise WarehouseError(f"--out {out} is a directory; name a file in it")
    if not target.parent.is_dir():
        raise WarehouseError(f"--out {out}: the directory {target.parent} does not exist; create it first")
    return target


def _default_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777  # keep the mode of the file replaced
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_atomically(target: Path, fill: Callable[[str], None]) -> None:
    """Call fill(temporary path) to write a file beside `target`, then rename it over `target`."""
    # the temporary name ends with the target's name, so DuckDB picks the same compression (x.csv.gz)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=f"-{target.name}")
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, _default_mode(target))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def write(table: pa.Table, fmt: str, out: str | os.PathLike | None, stream: TextIO) -> None:
    """Write `table` in `fmt` to the file `out` (atomically), or to `stream` (not parquet: binary)."""
    check_format(fmt, out)
    if out:
        target = Path(os.path.realpath(out))
        try:
            if fmt == "table":
                text = render_table(table)
                _write_atomically(target, lambda tmp: _write_text(tmp, text))
            else:
                _write_atomically(target, lambda tmp: _copy(table, fmt, tmp))
        except (OSError, duckdb.Error) as exc:
            raise WarehouseError(f"could not write --out {out}: {_first_line(exc)}") from exc
        return
    if fmt == "table":
        stream.write(render_table(table))
        return
    if fmt == "json" and table.num_rows == 0:
        stream.write("[]\n")
        return
    fd, tmp = tempfile.mkstemp(suffix=f".{fmt}")
    os.close(fd)
    try:
        _copy(table, fmt, tmp)
        with open(tmp) as handle:
            shutil.copyfileobj(handle, stream)
    finally:
        os.unlink(tmp)
