"""Worker shards (SPEC 12): workers write Parquet shards anywhere; `ingest shards DIR` merges them.

Layout of a shard directory shared by the workers of a run (say a Slurm array, `run --shard I/N`):

    DIR/shard-0003-of-0016/manifest.json           run config, its hash, weights sha256, problem ids
    DIR/shard-0003-of-0016/part-000000/{problems,results,attention}.parquet   one part per append
    DIR/.tmp-shard-0003-of-0016-<hex>/             being written, or a dead worker's debris: ignored

A worker writes into a hidden temp directory next to the final name, the manifest last, and publishes
the shard with one rename, so a reader sees a whole shard or none. Names depend on the shard's
position only: a retried worker produces the same name; if that shard already exists with the same
run config, the retry's copy is discarded (rows are deterministic given the config).

All shards of a run share its config (leave the shard index out of it) and so its config hash; the
run id is `run_fields["run_id"]` or, by default, `sharded-<config hash prefix>`, which every worker
computes alike. Lineage (code version, library versions) is taken on the worker, not at ingest.

`ingest_shards` commits each part as one warehouse batch (Warehouse.append_problems), skipping parts
whose problems the run already holds, so ingesting again is a no-op and an interrupted ingest resumes.
It refuses a shard whose config differs from its run's, and finishes the run (complete, compacted)
once it holds `n_problems_planned` problems (the whole run's, over all shards).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pyarrow.parquet as pq

from warehouse import lineage
from warehouse.frames import conform, distinct
from warehouse.shards import fsync_path, write_parquet

FORMAT = "codi-warehouse-shard/1"
MANIFEST = "manifest.json"
TABLES = ("problems", "results", "attention")
_NAME = re.compile(r"shard-(\d{4,})-of-(\d{4,})")


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:04d}-of-{count:04d}"


def default_run_id(config_hash: str) -> str:
    return f"sharded-{config_hash[:16]}"


class ShardWriter:
    """Writes one shard part by part; `commit()` publishes it atomically, `abort()` drops it.

    `run_fields`: "config" (dict, identical across the run's shards), "n_problems_planned" (problems of
    the whole run), optional "run_id", and any `runs` lineage field begin_run takes (model_name,
    weights_sha256, n_layers, seed, dataset_name, device, ...). As a context manager it commits on
    success and aborts on an exception.
    """

    def __init__(self, directory, run_fields: dict, *, index: int, count: int):
        from warehouse.store import LINEAGE_FIELDS

        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise ValueError(f"shard {index}/{count}: need 0 <= index < count")
        fields = dict(run_fields)
        config = fields.pop("config", None)
        if not isinstance(config, dict):
            raise TypeError("run_fields needs the run's config (a dict)")
        if not isinstance(fields.get("n_problems_planned"), int):
            raise TypeError("run_fields needs n_problems_planned: the problems of the whole run, all shards")
        unknown = sorted(set(fields) - set(LINEAGE_FIELDS))
        if unknown:
            raise TypeError(f"write_shard: unknown run field(s) {', '.join(unknown)}")
        self.config = json.loads(lineage.canonical_json(config))  # as the manifest will give it back
        self.config_hash = lineage.config_hash(self.config)
        fields.setdefault("weights_sha256", self.config.get("weights_sha256"))
        fields.setdefault("code_version", lineage.code_version())
        fields.setdefault("library_versions", lineage.library_versions())
        self.run_id = fields.pop("run_id", None) or default_run_id(self.config_hash)
        self.fields, self.index, self.count = fields, index, count
        self.directory = Path(directory)
        self.final = self.directory / shard_name(index, count)
        self.tmp = self.directory / f".tmp-{self.final.name}-{uuid.uuid4().hex}"
        self.tmp.mkdir(parents=True)
        self.parts: list[dict] = []
        self.problem_ids: set[str] = set()

    def append_problems(self, problems, results, attention=None) -> None:
        """Add one part: problem rows plus their results and attention (polars, Arrow or dicts)."""
        tables = {name: conform(data, name, self.run_id) for name, data in
                  zip(TABLES, (problems, results, attention))}
        ids = tables["problems"].column("problem_id").to_pylist()
        seen = set(self.problem_ids)
        for p in ids:
            if p in seen:
                raise ValueError(f"{self.final.name}: problem {p} appears twice in the shard")
            seen.add(p)
        for name in ("results", "attention"):
            stray = distinct(tables[name].column("problem_id")) - set(ids)
            if stray:
                raise ValueError(f"{name} rows for problems not in this part: {sorted(stray)[:3]}")
        part = self.tmp / f"part-{len(self.parts):06d}"
        part.mkdir()
        for name, table in tables.items():
            write_parquet(table, part / f"{name}.parquet", name)
        self.parts.append({"name": part.name, "problem_ids": ids,
                           "rows": {name: table.num_rows for name, table in tables.items()}})
        self.problem_ids.update(ids)

    def manifest(self) -> dict:
        return {"format": FORMAT, "run_id": self.run_id, "shard_index": self.index, "shard_count": self.count,
                "config": self.config, "config_hash": self.config_hash,
                "weights_sha256": self.fields.get("weights_sha256"), "fields": self.fields,
                "parts": self.parts, "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}

    def commit(self) -> Path:
        """Publish the shard with one rename; an existing copy with the same run config is kept."""
        path = self.tmp / MANIFEST
        path.write_text(json.dumps(self.manifest(), indent=1, default=str))
        with path.open("rb") as f:
            os.fsync(f.fileno())
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            if not (self.final / MANIFEST).is_file():
                raise
            existing = read_manifest(self.final)
            self.abort()
            if existing["config_hash"] != self.config_hash or existing["run_id"] != self.run_id:
                raise ValueError(f"{self.final} already exists for another run (run {existing['run_id']}, config "
                                 f"hash {existing['config_hash'][:12]}); use another directory") from None
            return self.final
        fsync_path(self.directory)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_shard(directory, run_fields: dict, problems, results, attention=None, *, index: int, count: int) -> Path:
    """Write shard `index` of `count` of a run in one go (see ShardWriter); returns its directory."""
    with ShardWriter(directory, run_fields, index=index, count=count) as writer:
        writer.append_problems(problems, results, attention)
    return writer.final


# --- ingest ----------------------------------------------------------------------------------------
@dataclass
class Shard:
    path: Path
    manifest: dict

    @property
    def label(self) -> str:
        """How messages name the shard: its directory."""
        return str(self.path)


def read_manifest(path: Path) -> dict:
    """A finished shard's manifest, checked for the keys ingest relies on."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        for key in ("run_id", "shard_index", "shard_count", "config", "config_hash", "fields", "parts"):
            if key not in manifest:
                raise ValueError(f"missing {key!r}")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable shard manifest ({exc})") from exc
    return manifest


def find_shards(directory) -> tuple[list[Shard], list[str]]:
    """Finished shards of a directory, and the names ignored (temp dirs, shards without a manifest)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"shard directory not found: {directory}")
    shards, ignored = [], []
    for path in sorted(directory.iterdir()):
        if not path.is_dir():
            continue
        if _NAME.fullmatch(path.name) and (path / MANIFEST).is_file():
            shards.append(Shard(path, read_manifest(path)))
        elif path.name.startswith(".tmp-shard-") or _NAME.fullmatch(path.name):
            ignored.append(path.name)
    return shards, ignored


def _check_run(shards: list[Shard]) -> None:
    """The shards of one run agree on config, weights, shard count and run size."""
    first = shards[0].manifest
    for shard in shards[1:]:
        m = shard.manifest
        for key in ("config_hash", "weights_sha256", "shard_count"):
            if m.get(key) != first.get(key):
                raise ValueError(f"{shard.label}: {key} {m.get(key)!r} differs from {shards[0].label}'s "
                                 f"{first.get(key)!r}; shards of run {m['run_id']} must share one config")
        if m["fields"].get("n_problems_planned") != first["fields"].get("n_problems_planned"):
            raise ValueError(f"{shard.label}: n_problems_planned differs from {shards[0].label}'s")


def _check_files(shard: Shard) -> None:
    """Every part file is there and holds the rows the manifest promises (read from footers only)."""
    for part in shard.manifest["parts"]:
        for table, rows in part["rows"].items():
            path = shard.path / part["name"] / f"{table}.parquet"
            try:
                found = pq.read_metadata(path).num_rows
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: unreadable ({exc})") from exc
            if found != rows:
                raise ValueError(f"{path}: {found} rows, the manifest says {rows} (torn copy?)")


def _against_run(store, run_id: str, shard: Shard) -> str | None:
    """The run's status, or None when it does not exist yet; refuses a run with another config."""
    from warehouse.errors import UnknownRun

    try:
        run = store.show_run(run_id)
    except UnknownRun:
        return None
    if run["run_id"] != run_id:  # show_run resolves prefixes; only an exact id is this run
        return None
    m = shard.manifest
    if run["config_hash"] != m["config_hash"]:
        raise ValueError(f"{shard.label}: its run config (hash {m['config_hash'][:12]}) differs from run {run_id}'s "
                         f"in the warehouse (hash {str(run['config_hash'])[:12]}); refusing to merge")
    if m.get("weights_sha256") and run.get("weights_sha256") and run["weights_sha256"] != m["weights_sha256"]:
        raise ValueError(f"{shard.label}: weights sha256 differs from run {run_id}'s; refusing to merge")
    return run["status"]


def _ingest_run(store, run_id: str, shards: list[Shard]) -> dict:
    from warehouse.errors import RunClosed

    _check_run(shards)
    for shard in shards:
        _check_files(shard)
    first = shards[0].manifest
    status = _against_run(store, run_id, shards[0])
    if status is None:
        store.begin_run(first["config"], run_id=run_id, **first["fields"])
        status = "running"
    elif status == "failed":
        store.resume_run(run_id)
        status = "running"
    committed = store.committed_problems(run_id)
    added = present = problems = 0
    for shard in sorted(shards, key=lambda s: s.manifest["shard_index"]):
        for part in shard.manifest["parts"]:
            ids = part["problem_ids"]
            known = [p for p in ids if p in committed]
            if len(known) == len(ids):
                present += 1
                continue
            where = f"{shard.label}/{part['name']}"
            if known:
                raise ValueError(f"{where}: problem {known[0]} is already in run {run_id} but others of the part "
                                 "are not; shards of a run must not share problems")
            if status == "complete":
                raise RunClosed(f"{where}: run {run_id} is complete and immutable; this part brings new problems")
            tables = {t: pq.read_table(shard.path / part["name"] / f"{t}.parquet") for t in TABLES}
            store.append_problems(run_id, tables["problems"], tables["results"], tables["attention"])
            committed.update(ids)
            added += 1
            problems += len(ids)
    planned = first["fields"]["n_problems_planned"]
    if status == "running" and len(committed) >= planned:
        store.finish_run(run_id)
        status = "complete"
    return {"run_id": run_id, "status": status, "shards": len(shards), "shard_count": first["shard_count"],
            "parts_added": added, "parts_already_present": present, "problems_added": problems,
            "problems_committed": len(committed), "problems_planned": planned}


def ingest_shards(db, directory) -> dict:
    """Merge every finished shard under `directory` into the warehouse; idempotent."""
    from warehouse.store import open_warehouse

    shards, ignored = find_shards(directory)
    by_run: dict[str, list[Shard]] = {}
    for shard in shards:
        by_run.setdefault(shard.manifest["run_id"], []).append(shard)
    runs = []
    if by_run:
        store = open_warehouse(db)
        runs = [_ingest_run(store, run_id, group) for run_id, group in sorted(by_run.items())]
    return {"directory": str(directory), "runs": runs, "ignored": ignored}
