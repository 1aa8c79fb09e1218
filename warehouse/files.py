"""Parquet files written outside the warehouse: worker shards (ingest/shards.py) and exports."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_ROW_GROUP = 1 << 20
# Attention rows are narrow; dictionary-encode the small ints, not the float weights (measured
# 2x faster than pyarrow's defaults, and smaller).
_WRITE_OPTIONS = {
    "attention": {
        "use_dictionary": ["run_id", "problem_id", "condition_id", "layer", "head", "dst", "src"],
        "write_statistics": ["run_id", "problem_id", "condition_id", "layer", "head"],
    },
}


def write_parquet(table: pa.Table, path: Path, name: str, durable: bool = True) -> None:
    """Write one table of the warehouse schema (`name`) as zstd Parquet; fsync it unless told not to."""
    pq.write_table(table, path, compression="zstd", row_group_size=_ROW_GROUP, **_WRITE_OPTIONS.get(name, {}))
    if durable:
        fsync_path(path)


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries (after a rename), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
