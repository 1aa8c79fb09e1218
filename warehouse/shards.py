"""Parquet shards: where fact rows live, and how a batch of problems commits atomically.

Layout next to the DuckDB file `x.duckdb` (see warehouse/README.md for why):

    x.shards/<run_id>/<batch>/{results,attention,run_problems,problems}.parquet   committed batches
    x.shards/_empty/schema/<table>.parquet     zero-row files, so a view's glob always matches
    x.shards/_staging/<run_id>/<uuid>/...      batches and compactions being written
    x.shards/_trash/<uuid>/<name>/...          directories on their way out

Views read `x.shards/*/*/<table>.parquet`; staging files sit deeper than that glob, so they are
invisible. A batch commits by one rename of its staging directory into `<run_id>/`: readers see all
of its files or none, and a killed writer leaves only staging debris that resume removes.

Batch files and their directory are fsynced around the publishing rename (about 10% of the append
rate here); `durable=False` skips that, which a killed process does not need (the kernel keeps what
was written). Should a batch still be torn (power loss without fsync, a bad disk), the next open for
writing and resume drop batches whose Parquet footers are unreadable, and resume redoes them.
Compacted files are always fsynced.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.schema import SHARD_TABLES, arrow_schema

COMPACTED = "b0000000-compacted"  # the one batch directory a finished run keeps
READY = "READY"
_GLOB_CHARS = set("*?[]{}'")
_ROW_GROUP = 1 << 20
# Attention rows are narrow; dictionary-encode the small ints, not the float weights (measured
# 2x faster than pyarrow's defaults, and smaller).
_WRITE_OPTIONS = {
    "attention": {"use_dictionary": ["run_id", "problem_id", "condition_id", "layer", "head", "dst", "src"],
                  "write_statistics": ["run_id", "problem_id", "condition_id", "layer", "head"]},
}


def shard_root(db_path: str | os.PathLike) -> Path:
    """`results/warehouse.duckdb` keeps its shards in `results/warehouse.shards/`."""
    path = Path(db_path).resolve()
    root = path.with_suffix(".shards") if path.suffix else path.with_name(path.name + ".shards")
    if _GLOB_CHARS & set(str(root)):
        raise ValueError(f"warehouse path {path} contains one of {''.join(sorted(_GLOB_CHARS))}")
    return root


def write_parquet(table: pa.Table, path: Path, name: str, durable: bool = True) -> None:
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


class Shards:
    """The shard directory of one warehouse: batch commits, compaction, discard and recovery."""

    def __init__(self, db_path: str | os.PathLike, durable: bool = True):
        self.root = shard_root(db_path)
        self.staging = self.root / "_staging"
        self.trash = self.root / "_trash"
        self.durable = durable

    def glob(self, table: str) -> str:
        return f"{self.root}/*/*/{table}.parquet"

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def ensure_layout(self) -> None:
        """Create the directories and the zero-row schema files the views' globs rely on."""
        empty = self.root / "_empty" / "schema"
        empty.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        self.trash.mkdir(exist_ok=True)
        for table in SHARD_TABLES:
            target = empty / f"{table}.parquet"
            if not target.exists():
                tmp = empty / f".{table}.{uuid.uuid4().hex}.tmp"
                pq.write_table(arrow_schema(table).empty_table(), tmp)
                os.replace(tmp, target)

    def write_batch(self, run_id: str, first_ordinal: int, tables: dict[str, pa.Table]) -> Path:
        """Write one batch's files in staging, then publish them with a single rename (the commit)."""
        run_dir = self.run_dir(run_id)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run {run_id} has no shard directory {run_dir} (was it deleted?)")
        token = uuid.uuid4().hex
        stage = self.staging / run_id / token
        stage.mkdir(parents=True)
        for name, table in tables.items():
            write_parquet(table, stage / f"{name}.parquet", name, self.durable)
        final = run_dir / f"b{first_ordinal:07d}-{token[:8]}"
        os.rename(stage, final)
        if self.durable:
            fsync_path(run_dir)
        return final

    def run_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("_"))

    def run_files(self, run_id: str, table: str) -> list[Path]:
        return sorted(self.run_dir(run_id).glob(f"*/{table}.parquet"))

    def read_run(self, run_id: str, table: str, columns: list[str] | None = None) -> pa.Table:
        """All committed rows of one run's table, read straight from its files (no DuckDB lock)."""
        parts = [pq.read_table(f, columns=columns) for f in self.run_files(run_id, table)]
        if not parts:
            schema = arrow_schema(table)
            return schema.empty_table().select(columns) if columns else schema.empty_table()
        return pa.concat_tables(parts)

    def compact(self, run_id: str) -> Path:
        """Merge a run's batches into one file per table, in staging; `swap_in` publishes it."""
        token = uuid.uuid4().hex
        staged = self.staging / run_id / f"compact-{token}"
        target = staged / run_id / COMPACTED
        target.mkdir(parents=True)
        for table in SHARD_TABLES:
            if table != "problems":  # problems move into the native problems_base table
                _merge_files(self.run_files(run_id, table), target / f"{table}.parquet", table)
        (staged / READY).touch()
        return staged

    def swap_in(self, run_id: str, staged: Path) -> None:
        """Replace the run's directory by the compacted one. Call while holding the write lock."""
        old = self.run_dir(run_id)
        if old.exists():
            self._to_trash(old)
        os.rename(staged / run_id, old)

    def discard(self, run_id: str) -> None:
        """Move a run's directory and its staging debris to the trash (the run's rows vanish)."""
        for path in (self.run_dir(run_id), self.staging / run_id):
            if path.exists():
                self._to_trash(path)

    def _to_trash(self, path: Path) -> None:
        """Move out of sight: one level deeper than the views' glob can reach."""
        bin_ = self.trash / uuid.uuid4().hex
        bin_.mkdir(parents=True)
        os.rename(path, bin_ / path.name)

    def drop_torn_batches(self, run_id: str) -> list[str]:
        """Move batches with a missing or unreadable file (torn by a power loss) to the trash."""
        dropped = []
        for batch in sorted(p for p in self.run_dir(run_id).glob("*") if p.is_dir()):
            try:
                for table in SHARD_TABLES if batch.name != COMPACTED else ("results", "attention", "run_problems"):
                    pq.read_metadata(batch / f"{table}.parquet")
            except (OSError, pa.ArrowException):
                self._to_trash(batch)
                dropped.append(batch.name)
        return dropped

    def clear_staging(self, run_id: str) -> None:
        """Remove what a killed writer of this run left behind; never touches committed batches."""
        shutil.rmtree(self.staging / run_id, ignore_errors=True)

    def empty_trash(self) -> None:
        for entry in self.trash.glob("*") if self.trash.exists() else ():
            shutil.rmtree(entry, ignore_errors=True)

    def recover(self) -> list[str]:
        """Finish compaction swaps cut short by a crash between their two renames."""
        recovered = []
        for ready in self.staging.glob(f"*/compact-*/{READY}") if self.staging.exists() else ():
            run_id = ready.parent.parent.name
            if not self.run_dir(run_id).exists() and (ready.parent / run_id).is_dir():
                os.rename(ready.parent / run_id, self.run_dir(run_id))
                recovered.append(run_id)
        return recovered


def _merge_files(files: list[Path], out: Path, table: str) -> None:
    """Stream files into one Parquet file; small inputs are grouped into row groups of ~1M rows."""
    schema = arrow_schema(table)
    with pq.ParquetWriter(out, schema, compression="zstd", **_WRITE_OPTIONS.get(table, {})) as writer:
        pending, rows = [], 0
        for path in files:
            part = pq.read_table(path, schema=schema)
            pending.append(part)
            rows += part.num_rows
            if rows >= _ROW_GROUP // 8:
                writer.write_table(_concat(pending), row_group_size=_ROW_GROUP)
                pending, rows = [], 0
        if pending or not files:
            writer.write_table(_concat(pending) if pending else schema.empty_table())
    fsync_path(out)


def _concat(parts: list[pa.Table]) -> pa.Table:
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
