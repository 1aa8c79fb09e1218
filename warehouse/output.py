"""Query results as a text table, CSV, JSON (an array of row objects) or Parquet.

CSV, JSON and Parquet are written by DuckDB's own writers (from an in-memory connection over the
Arrow result), so nested, decimal, binary and JSON columns come out the way DuckDB clients expect.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import TextIO

import duckdb
import polars as pl
import pyarrow as pa

from warehouse.errors import WarehouseError

FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROWS = 1000
_COPY_OPTIONS = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true",
                 "parquet": "FORMAT parquet, COMPRESSION zstd"}


def render_table(table: pa.Table, max_rows: int = TABLE_ROWS) -> str:
    """A readable text table; longer results are cut, with a note saying how to get every row."""
    shown = table.slice(0, max_rows)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=80, tbl_hide_dataframe_shape=True,
                   tbl_width_chars=200):
        text = str(pl.from_arrow(shown)) if shown.num_columns else "(no columns)"
    if table.num_rows > max_rows:
        text += f"\n({max_rows} of {table.num_rows} rows shown; use --format csv or parquet for all)"
    return text + "\n"


def _copy(table: pa.Table, fmt: str, path: str) -> None:
    con = duckdb.connect()
    try:
        con.register("result", table)
        escaped = path.replace("'", "''")
        con.execute(f"COPY result TO '{escaped}' ({_COPY_OPTIONS[fmt]})")
    finally:
        con.close()


def write(table: pa.Table, fmt: str, out: str | None, stream: TextIO) -> None:
    """Write `table` in `fmt` to the file `out`, or to `stream` (not for parquet: it is binary)."""
    if fmt not in FORMATS:
        raise WarehouseError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "table":
        text = render_table(table)
        if out:
            with open(out, "w") as handle:
                handle.write(text)
        else:
            stream.write(text)
        return
    if out:
        _copy(table, fmt, str(out))
        return
    if fmt == "parquet":
        raise WarehouseError("--format parquet needs --out FILE")
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
