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
It refuses a shard whose config differs from its run's, and finishes the run (complete)
once it holds `n_problems_planned` problems (the whole run's, over all shards).

Shards come from elsewhere (other machines, copies), so ingest trusts none of them. Before a run is
begun or resumed, every shard of it is checked: its manifest in full (`validate_manifest`: format,
types, hashes, the lineage a worker may record, part names), its files (`check_shard_files`: only
the listed parts, nothing linking out of the shard directory, row counts from the Parquet footers),
that no two parts hold a problem, and, for the parts still to merge, their key columns
(`check_part_rows`: no (problem, condition) result or attention key twice, rows of the listed
problems and of this run only). A shard that fails is refused with one line (ShardError, a ValueError)
before anything is written. Should a merge fail midway all the same (a part that cannot be read), the
run is finished as failed with the error, its committed parts kept; `ingest shards DIR` run again
resumes it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import lineage
from warehouse.files import fsync_path, write_parquet
from warehouse.frames import conform, distinct, first_duplicate
from warehouse.schema import KEYS, READOUT_TABLES

FORMAT = "codi-warehouse-shard/1"
MANIFEST = "manifest.json"
TABLES = ("problems", "results", "attention")
# a part holds the READOUT_TABLES (states, decoding, ...) only when its run records them (older shards: none)
_NAME = re.compile(r"shard-(\d{4,})-of-(\d{4,})")
_PART = "part-{:06d}"  # the i-th part of a shard; no other name is accepted
_RUN_ID = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]{0,99}")  # what warehouse.store accepts
_HEX64 = re.compile(r"[0-9a-f]{64}")  # a sha256 hexdigest
_RANDOM_WEIGHTS = re.compile(
    r"random-[A-Za-z0-9._-]+-seed\d+"
)  # architecture-only models (engine/model/arch.py)
# The keys a run holds once: a part with one of them twice is refused.
MANIFEST_KEYS = (
    "format",
    "run_id",
    "shard_index",
    "shard_count",
    "config",
    "config_hash",
    "weights_sha256",
    "fields",
    "parts",
    "written_at",
)
_SMALLINT, _INT, _BIGINT = 2**15 - 1, 2**31 - 1, 2**63 - 1


class ShardError(ValueError):
    """A shard ingest refuses: one line naming the shard (or its file), what is wrong and what to do."""


class ManifestError(ShardError):
    """A shard manifest that is unreadable or not what a worker of this version writes."""


def _text(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 4096


def _int_in(low: int, high: int):
    return lambda value: type(value) is int and low <= value <= high


def _list_of(check):
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _number(value) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits: no float holds it
        return False


def _sha256(value) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _weights(value) -> bool:
    return _sha256(value) or (isinstance(value, str) and _RANDOM_WEIGHTS.fullmatch(value) is not None)


def _versions(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _text(v) for k, v in value.items())


def _tags(value) -> bool:
    """An object of tag key -> string value (an empty value is a tag too: `--tag draft=`)."""
    return isinstance(value, dict) and all(_text(k) and isinstance(v, str) for k, v in value.items())


# The `runs` lineage a worker records in its manifest ("fields"), each with its check and what it must
# be; null means not recorded. n_problems_planned is required.
WORKER_FIELDS = {
    "n_problems_planned": (_int_in(1, _INT), "a positive integer (the problems of the whole run)"),
    "model_name": (_text, "a non-empty string"),
    "weights_sha256": (_weights, "64 lowercase hex digits (a sha256) or random-<arch>-seed<N>"),
    "n_layers": (_int_in(1, _SMALLINT), "a positive integer"),
    "n_heads": (_int_in(1, _SMALLINT), "a positive integer"),
    "d_model": (_int_in(1, _INT), "a positive integer"),
    "patch_layers": (_list_of(_int_in(0, _SMALLINT)), "a list of layer numbers"),
    "methods": (_list_of(_text), "a list of method names"),
    "sigmas": (_list_of(_number), "a list of finite numbers"),
    "seed": (_int_in(-_BIGINT - 1, _BIGINT), "a 64-bit integer"),
    "dataset_name": (_text, "a non-empty string"),
    "dataset_hash": (_sha256, "64 lowercase hex digits (a sha256)"),
    "code_version": (_text, "a non-empty string"),
    "library_versions": (_versions, "an object of library name -> version string"),
    "device": (_text, "a non-empty string"),
    "dtype": (_text, "a non-empty string"),
    "threads": (_int_in(1, _INT), "a positive integer"),
    "wait_policy": (_text, "a non-empty string"),
    # the run's labels (warehouse/labels.py), given to the worker as `run --name/--tag/--note`
    "name": (_text, "a non-empty string"),
    "tags": (_tags, "an object of tag key -> string value"),
    "note": (lambda v: isinstance(v, str), "a string"),
}
# The other `runs` columns: ingest owns them, a manifest must not set them.
INGEST_FIELDS = {
    "run_id": "the run id is the manifest's top-level run_id",
    "status": "ingest sets the run's status",
    "started_at": "ingest records the run's times",
    "finished_at": "ingest records the run's times",
    "error": "ingest records a failed merge's error",
    "config_json": "ingest derives it from the manifest's config",
    "config_hash": "ingest derives it from the manifest's config",
    "convention": "worker shards are always convention codi",
    "parent_run_id": "a sharded run has no parent run",
}


def _show(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _line(exc: BaseException, width: int = 300) -> str:
    """An exception's message on one line (cut at `width` characters)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def _redo(shard_dir: Path) -> str:
    """What to do about a bad shard: write it again."""
    found = _NAME.fullmatch(shard_dir.name)
    how = f"`run --shard {int(found[1])}/{int(found[2])}`" if found else "its worker"
    return f"delete {shard_dir.name} and rerun {how} with the run's flags"


def fields_problem(fields) -> str | None:
    """What is wrong with a manifest's lineage fields (None: nothing)."""
    if not isinstance(fields, dict):
        return f"fields is {_show(fields)}, expected an object of runs lineage fields"
    for name, value in fields.items():
        if name in INGEST_FIELDS:
            return f"fields.{name} is not a worker's to set ({INGEST_FIELDS[name]})"
        if name not in WORKER_FIELDS:
            return f"fields.{name} is not a lineage field a worker records ({', '.join(WORKER_FIELDS)})"
        check, expected = WORKER_FIELDS[name]
        if not (value is None and name != "n_problems_planned") and not check(value):
            return f"fields.{name} is {_show(value)}, expected {expected}"
    if "n_problems_planned" not in fields:
        return "fields.n_problems_planned is missing (the problems of the whole run, all shards)"
    return None


def _parts_problem(parts, planned: int) -> str | None:
    if not isinstance(parts, list):
        return f"parts is {_show(parts)}, expected a list"
    seen: dict[str, str] = {}
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or set(part) != {"name", "problem_ids", "rows"}:
            return f"parts[{i}] is not an object of name, problem_ids and rows"
        name, ids, rows = part["name"], part["problem_ids"], part["rows"]
        if name != _PART.format(i):
            return f"parts[{i}] is named {_show(name)}, expected {_PART.format(i)!r}"
        if not isinstance(ids, list) or not all(isinstance(p, str) and 0 < len(p) <= 200 for p in ids):
            return f"{name}: problem_ids is not a list of problem id strings"
        for problem in ids:
            if problem in seen:
                return f"{name}: problem {problem} is listed twice (also in {seen[problem]})"
            seen[problem] = name
        if not isinstance(rows, dict) or not set(TABLES) <= set(rows) <= {*TABLES, *READOUT_TABLES}:
            return (
                f"{name}: rows is not an object of row counts for {', '.join(TABLES)} "
                f"(and any of {', '.join(READOUT_TABLES)})"
            )
        if not all(type(n) is int and n >= 0 for n in rows.values()):
            return f"{name}: rows holds {_show(rows, 80)}, expected counts (integers >= 0)"
        if rows["problems"] != len(ids):
            return f"{name}: rows.problems is {rows['problems']} for {len(ids)} problem ids"
    if len(seen) > planned:
        return f"the shard holds {len(seen)} problems, more than the run's n_problems_planned {planned}"
    return None


def _manifest_problem(m, name: str) -> str | None:
    if not isinstance(m, dict):
        return f"{MANIFEST} holds {_show(m)}, not an object"
    if m.get("format") != FORMAT:
        return f"manifest format {_show(m.get('format'))}, expected {FORMAT!r}"
    missing = [k for k in MANIFEST_KEYS if k not in m]
    if missing:
        return f"manifest lacks {', '.join(missing)}"
    unknown = sorted(set(m) - set(MANIFEST_KEYS))
    if unknown:
        return f"manifest holds unknown key(s) {', '.join(map(_show, unknown))}"
    if not (isinstance(m["run_id"], str) and _RUN_ID.fullmatch(m["run_id"])):
        return f"run_id {_show(m['run_id'])} is not a run id (letters, digits, '.', '_', '-')"
    index, count = m["shard_index"], m["shard_count"]
    if not (type(index) is int and type(count) is int and 0 <= index < count):
        return f"shard_index/shard_count {_show(index)}/{_show(count)}: need integers with 0 <= index < count"
    if name != shard_name(index, count):
        return f"shard {index}/{count} must be in a directory named {shard_name(index, count)}, not {name}"
    if not isinstance(m["config"], dict):
        return f"config is {_show(m['config'])}, expected an object"
    if not _sha256(m["config_hash"]):
        return f"config_hash {_show(m['config_hash'])} is not 64 lowercase hex digits"
    if m["config_hash"] != lineage.config_hash(m["config"]):
        return f"config_hash {m['config_hash'][:12]}... is not the hash of its config (edited?)"
    problem = fields_problem(m["fields"])
    if problem:
        return problem
    if m["weights_sha256"] != m["fields"].get("weights_sha256"):
        return (
            f"weights_sha256 {_show(m['weights_sha256'])} differs from fields.weights_sha256 "
            f"{_show(m['fields'].get('weights_sha256'))}"
        )
    try:
        dt.datetime.fromisoformat(m["written_at"])
    except (TypeError, ValueError):
        return f"written_at {_show(m['written_at'])} is not an ISO timestamp"
    return _parts_problem(m["parts"], m["fields"]["n_problems_planned"])


def validate_manifest(manifest, shard_dir) -> dict:
    """`manifest` (as read from `shard_dir`/manifest.json) checked in full; returns it.

    Pure: looks at nothing but the dict and the directory's name. Raises ManifestError, one line
    naming the shard directory, what is wrong and what to do.
    """
    shard_dir = Path(shard_dir)
    problem = _manifest_problem(manifest, shard_dir.name)
    if problem:
        raise ManifestError(f"{shard_dir}: invalid shard manifest: {problem}; {_redo(shard_dir)}")
    return manifest


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:04d}-of-{count:04d}"


def default_run_id(config_hash: str) -> str:
    return f"sharded-{config_hash[:16]}"


class ShardWriter:
    """Writes one shard part by part; `commit()` publishes it atomically, `abort()` drops it.

    `run_fields`: "config" (dict, identical across the run's shards), "n_problems_planned" (problems of
    the whole run), optional "run_id", and any lineage field a worker records (WORKER_FIELDS:
    model_name, weights_sha256, n_layers, seed, dataset_name, device, ...). As a context manager it
    commits on success and aborts on an exception.
    """

    def __init__(self, directory, run_fields: dict, *, index: int, count: int):
        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise ValueError(f"shard {index}/{count}: need 0 <= index < count")
        fields = dict(run_fields)
        config = fields.pop("config", None)
        if not isinstance(config, dict):
            raise TypeError("run_fields needs the run's config (a dict)")
        if not isinstance(fields.get("n_problems_planned"), int):
            raise TypeError("run_fields needs n_problems_planned: the problems of the whole run, all shards")
        self.config = json.loads(lineage.canonical_json(config))  # as the manifest will give it back
        self.config_hash = lineage.config_hash(self.config)
        self.run_id = fields.pop("run_id", None) or default_run_id(self.config_hash)
        if not (isinstance(self.run_id, str) and _RUN_ID.fullmatch(self.run_id)):
            raise ValueError(
                f"run id {self.run_id!r}: use letters, digits, '.', '_' and '-', not first '.' or '_'"
            )
        fields.setdefault("weights_sha256", self.config.get("weights_sha256"))
        fields.setdefault("code_version", lineage.code_version())
        fields.setdefault("library_versions", lineage.library_versions())
        fields = json.loads(json.dumps(fields, default=str))  # as the manifest will give them back
        problem = fields_problem(fields)  # what ingest would refuse, refused here already
        if problem:
            raise TypeError(f"run_fields: {problem}")
        self.fields, self.index, self.count = fields, index, count
        self.directory = Path(directory)
        self.final = self.directory / shard_name(index, count)
        self.tmp = self.directory / f".tmp-{self.final.name}-{uuid.uuid4().hex}"
        self.tmp.mkdir(parents=True)
        self.parts: list[dict] = []
        self.problem_ids: set[str] = set()

    def append_problems(self, problems, results, attention=None, readouts=None) -> None:
        """Add one part: problem rows plus their results and attention (polars, Arrow or dicts), and the
        readout tables the run records (`readouts`: table name -> rows)."""
        tables = {
            name: conform(data, name, self.run_id)
            for name, data in zip(TABLES, (problems, results, attention), strict=True)
        }
        unknown = sorted(set(readouts or {}) - set(READOUT_TABLES))
        if unknown:
            raise ValueError(f"unknown readout table(s) {', '.join(unknown)}")
        for name, data in (readouts or {}).items():
            tables[name] = conform(data, name, self.run_id)
        ids = tables["problems"].column("problem_id").to_pylist()
        seen = set(self.problem_ids)
        for p in ids:
            if p in seen:
                raise ValueError(f"{self.final.name}: problem {p} appears twice in the shard")
            seen.add(p)
        for name in tables:
            if name == "problems":
                continue
            stray = distinct(tables[name].column("problem_id")) - set(ids)
            if stray:
                raise ValueError(f"{name} rows for problems not in this part: {sorted(stray)[:3]}")
        part = self.tmp / f"part-{len(self.parts):06d}"
        part.mkdir()
        for name, table in tables.items():
            write_parquet(table, part / f"{name}.parquet", name)
        self.parts.append(
            {
                "name": part.name,
                "problem_ids": ids,
                "rows": {name: table.num_rows for name, table in tables.items()},
            }
        )
        self.problem_ids.update(ids)

    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "shard_index": self.index,
            "shard_count": self.count,
            "config": self.config,
            "config_hash": self.config_hash,
            "weights_sha256": self.fields.get("weights_sha256"),
            "fields": self.fields,
            "parts": self.parts,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

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
            try:
                existing = read_manifest(self.final)
            finally:
                self.abort()
            if existing["config_hash"] != self.config_hash or existing["run_id"] != self.run_id:
                raise ValueError(
                    f"{self.final} already exists for another run (run {existing['run_id']}, config "
                    f"hash {existing['config_hash'][:12]}); use another directory"
                ) from None
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


def write_shard(
    directory, run_fields: dict, problems, results, attention=None, *, index: int, count: int
) -> Path:
    """Write shard `index` of `count` of a run in one go (see ShardWriter); returns its directory."""
    with ShardWriter(directory, run_fields, index=index, count=count) as writer:
        writer.append_problems(problems, results, attention)
    return writer.final


# --- ingest ---------------------------------------------------------------------------------------
@dataclass
class Shard:
    path: Path
    manifest: dict

    @property
    def label(self) -> str:
        """How messages name the shard: its directory."""
        return str(self.path)


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"key {twice!r} appears twice")
    return dict(pairs)


def _escapes(path: Path, root: Path) -> bool:
    """Whether `path` (a symlink, or below one) leads out of the directory `root`."""
    return not path.resolve().is_relative_to(root.resolve())


def read_manifest(path) -> dict:
    """A finished shard's manifest, validated in full (validate_manifest); ManifestError if it is not."""
    path = Path(path)
    file = path / MANIFEST
    try:
        if _escapes(file, path):
            raise ManifestError(f"{path}: {MANIFEST} links outside the shard directory; {_redo(path)}")
        text = file.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: unreadable shard manifest ({_line(exc)}); {_redo(path)}") from exc
    try:
        manifest = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ManifestError(f"{path}: {MANIFEST} is not valid JSON ({_line(exc)}); {_redo(path)}") from exc
    except RecursionError:
        raise ManifestError(f"{path}: {MANIFEST} is nested too deeply to read; {_redo(path)}") from None
    return validate_manifest(manifest, path)


def find_shards(directory) -> tuple[list[Shard], list[str]]:
    """Finished shards of a directory, and the names ignored (temp dirs, shards without a manifest).

    Every finished shard's manifest is validated (ManifestError for the first bad one).
    """
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


def check_shard_files(shard: Shard) -> None:
    """The shard directory holds its manifest and the parts it lists, nothing else, nothing linking out
    of it, and every part file holds the rows the manifest promises (read from the footers only)."""
    root, parts = shard.path, shard.manifest["parts"]
    fail = f"; {_redo(root)}"
    expected = {MANIFEST, *(part["name"] for part in parts)}
    try:
        for entry in sorted(root.iterdir()):
            if entry.name not in expected:
                raise ShardError(
                    f"{root}: unexpected {entry.name!r} in the shard (a shard holds {MANIFEST} and "
                    f"the parts its manifest lists){fail}"
                )
        for part in parts:
            where = root / part["name"]
            if _escapes(where, root):
                raise ShardError(f"{where}: links outside the shard directory{fail}")
            if not where.is_dir():
                raise ShardError(f"{where}: part directory missing{fail}")
            files = {f"{table}.parquet" for table in part["rows"]}  # the three tables and any readouts
            for entry in sorted(where.iterdir()):
                if entry.name not in files:
                    raise ShardError(
                        f"{where}: unexpected {entry.name!r} in the part (a part holds "
                        f"{', '.join(sorted(files))}){fail}"
                    )
            for table, rows in part["rows"].items():
                path = where / f"{table}.parquet"
                if _escapes(path, root):
                    raise ShardError(f"{path}: links outside the shard directory{fail}")
                if not path.is_file():
                    raise ShardError(f"{path}: missing{fail}")
                try:
                    found = pq.read_metadata(path).num_rows
                except (OSError, ValueError, pa.ArrowException) as exc:
                    raise ShardError(f"{path}: unreadable ({_line(exc)}){fail}") from exc
                if found != rows:
                    raise ShardError(f"{path}: {found} rows, the manifest says {rows} (torn copy?){fail}")
    except OSError as exc:
        raise ShardError(f"{root}: cannot be read ({_line(exc)})") from exc


def check_part_rows(shard: Shard, part: dict, run_id: str) -> None:
    """A part's key columns: rows of this run and of the part's problems only, no key twice, no null key.

    Reads the key columns only (the weights are left for the merge).
    """
    ids = set(part["problem_ids"])
    where = shard.path / part["name"]
    fail = f"; {_redo(shard.path)}"
    for table in (*TABLES, *(t for t in READOUT_TABLES if t in part.get("rows", {}))):
        path = where / f"{table}.parquet"
        columns = [*KEYS[table], *(["run_id"] if table != "problems" else [])]  # problems rows have no run
        try:
            data = pq.read_table(path, columns=columns)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise ShardError(f"{path}: unreadable ({_line(exc)}){fail}") from exc
        nulls = [c for c in columns if data.column(c).null_count]
        if nulls:
            raise ShardError(f"{path}: {table} rows with no {nulls[0]}{fail}")
        runs = distinct(data.column("run_id")) - {run_id} if "run_id" in columns else set()
        if runs:
            raise ShardError(
                f"{path}: {table} rows of run {min(runs)}, not of the shard's run {run_id}{fail}"
            )
        found = distinct(data.column("problem_id"))
        if table == "problems" and found != ids:
            raise ShardError(
                f"{path}: its problems differ from the manifest's problem_ids for {part['name']}{fail}"
            )
        if found - ids:
            raise ShardError(
                f"{path}: {table} rows of problem {min(found - ids)}, which {part['name']} does "
                f"not list{fail}"
            )
        twice = first_duplicate(data.select(list(KEYS[table])))
        if twice is not None:
            key = ", ".join(f"{k} {v}" for k, v in twice.items())
            raise ShardError(f"{path}: duplicate {table} rows (more than one row for {key}){fail}")


def check_run_shards(shards: list[Shard]) -> None:
    """The shards of one run agree on config, weights, shard count and run size, and share no problem."""
    first = shards[0].manifest
    for shard in shards[1:]:
        m = shard.manifest
        for key in ("config_hash", "weights_sha256", "shard_count"):
            if m.get(key) != first.get(key):
                raise ShardError(
                    f"{shard.label}: {key} {m.get(key)!r} differs from {shards[0].label}'s "
                    f"{first.get(key)!r}; shards of run {m['run_id']} must share one config"
                )
        if m["fields"]["n_problems_planned"] != first["fields"]["n_problems_planned"]:
            raise ShardError(
                f"{shard.label}: n_problems_planned differs from {shards[0].label}'s; shards of run "
                f"{m['run_id']} must share one config"
            )
    owner: dict[str, str] = {}
    for shard in shards:
        for part in shard.manifest["parts"]:
            where = f"{shard.label}/{part['name']}"
            for problem in part["problem_ids"]:
                if problem in owner:
                    raise ShardError(
                        f"{where}: problem {problem} is also in {owner[problem]}; shards of a run must "
                        "not share problems (every worker needs the run's flags, --batch-size "
                        "included): delete the wrong shard and rerun its worker"
                    )
                owner[problem] = where
    planned = first["fields"]["n_problems_planned"]
    if len(owner) > planned:
        raise ShardError(
            f"{shards[0].path.parent}: the shards of run {first['run_id']} hold {len(owner)} problems, "
            f"more than its n_problems_planned {planned}; they cannot all be this run's"
        )


def _against_run(store, run_id: str, shard: Shard) -> tuple[str | None, set[str]]:
    """The run's status (None when it does not exist yet) and committed problems; refuses another config."""
    from warehouse.errors import UnknownRun

    try:
        run = store.show_run(run_id)
    except UnknownRun:
        return None, set()
    if run["run_id"] != run_id:  # show_run resolves prefixes; only an exact id is this run
        return None, set()
    m = shard.manifest
    if run["config_hash"] != m["config_hash"]:
        raise ShardError(
            f"{shard.label}: its run config (hash {m['config_hash'][:12]}) differs from run {run_id}'s "
            f"in the warehouse (hash {str(run['config_hash'])[:12]}); refusing to merge"
        )
    if m.get("weights_sha256") and run.get("weights_sha256") and run["weights_sha256"] != m["weights_sha256"]:
        raise ShardError(f"{shard.label}: weights sha256 differs from run {run_id}'s; refusing to merge")
    return run["status"], store.committed_problems(run_id)


def _pending(run_id: str, shards: list[Shard], committed: set[str]) -> list[tuple[Shard, dict]]:
    """The parts whose problems the run does not hold yet; refuses a part it holds in part."""
    todo = []
    for shard in shards:
        for part in shard.manifest["parts"]:
            known = [p for p in part["problem_ids"] if p in committed]
            if len(known) == len(part["problem_ids"]):
                continue
            if known:
                raise ShardError(
                    f"{shard.label}/{part['name']}: problem {known[0]} is already in run {run_id} but "
                    "others of the part are not; shards of a run must not share problems"
                )
            todo.append((shard, part))
    return todo


def _ingest_run(store, run_id: str, shards: list[Shard]) -> dict:
    """Merge one run's shards (already checked by check_run_shards and check_shard_files)."""
    from warehouse.errors import RunBusy, RunClosed

    shards = sorted(shards, key=lambda s: s.manifest["shard_index"])
    first = shards[0].manifest
    planned = first["fields"]["n_problems_planned"]
    n_parts = sum(len(s.manifest["parts"]) for s in shards)
    status, committed = _against_run(store, run_id, shards[0])
    todo = _pending(run_id, shards, committed)
    if todo and status == "complete":
        shard, part = todo[0]
        raise RunClosed(
            f"{shard.label}/{part['name']}: run {run_id} is complete and immutable; this part brings "
            "new problems"
        )
    checked = set()
    for shard, part in todo:  # all of them before the run is begun or resumed
        check_part_rows(shard, part, run_id)
        checked.add((shard.path, part["name"]))
    added = problems = 0
    if status != "complete":
        if status is None:
            # convention and parent run are ingest's: never taken from the config's entries of that name
            store.begin_run(
                first["config"], run_id=run_id, convention="codi", parent_run_id=None, **first["fields"]
            )
            committed = set()
        else:  # running (an earlier merge was killed) or failed
            committed = set(store.resume_run(run_id))
        status, where = "running", f"run {run_id}"
        try:
            todo = _pending(run_id, shards, committed)  # what the run holds now, after resume
            for shard, part in todo:
                if (shard.path, part["name"]) not in checked:
                    check_part_rows(shard, part, run_id)
            for shard, part in todo:
                where = f"{shard.label}/{part['name']}"
                folder = shard.path / part["name"]
                tables = {t: pq.read_table(folder / f"{t}.parquet") for t in TABLES}
                readouts = {
                    t: pq.read_table(folder / f"{t}.parquet")
                    for t in READOUT_TABLES
                    if t in part.get("rows", {})
                }
                store.append_problems(
                    run_id, tables["problems"], tables["results"], tables["attention"], readouts=readouts
                )
                committed.update(part["problem_ids"])
                added += 1
                problems += len(part["problem_ids"])
            where = f"run {run_id}"
            if len(committed) >= planned:
                store.finish_run(run_id)
                status = "complete"
        except RunBusy:
            raise  # another process writes the run: not this merge's to end
        except BaseException as exc:
            _fail(store, run_id, where, exc, f"{len(committed)} of {planned}", shards[0].path.parent)
            raise
    return {
        "run_id": run_id,
        "status": status,
        "shards": len(shards),
        "shard_count": first["shard_count"],
        "parts_added": added,
        "parts_already_present": n_parts - added,
        "problems_added": problems,
        "problems_committed": len(committed),
        "problems_planned": planned,
    }


def _fail(store, run_id: str, where: str, exc: BaseException, done: str, directory: Path) -> None:
    """Finish a run whose merge failed midway as failed (not running forever); raise one line for input
    and file errors, else let the original exception (a bug, an interrupt) go on."""
    message = f"{where}: {_line(exc)}"
    try:
        store.finish_run(run_id, "failed", error=message)
        outcome = f"run {run_id} is marked failed with {done} problems committed"
    except Exception as second:  # noqa: BLE001 - the first error is the one to report
        outcome = f"run {run_id} could not be marked failed ({_line(second)})"
        exc.add_note(outcome)
    if isinstance(exc, (ValueError, OSError, pa.ArrowException)):
        raise ShardError(
            f"{message}; {outcome}; fix or rewrite the shard, then run `ingest shards {directory}` "
            "again to resume it"
        ) from exc


def ingest_shards(db: str | os.PathLike, directory: str | os.PathLike) -> dict[str, Any]:
    """Merge every finished shard under `directory` into the warehouse; idempotent.

    Every shard is validated (manifest, files, problems shared between shards) before the warehouse is
    opened, and every part still to merge (key columns) before its run is begun or resumed. Returns
    `{"directory", "runs": [one dict per run merged], "ignored": [unfinished shard names]}`.
    """
    from warehouse.store import open_warehouse

    shards, ignored = find_shards(directory)
    by_run: dict[str, list[Shard]] = {}
    for shard in shards:
        by_run.setdefault(shard.manifest["run_id"], []).append(shard)
    for group in by_run.values():
        check_run_shards(group)
        for shard in group:
            check_shard_files(shard)
    runs = []
    if by_run:
        store = open_warehouse(db)
        runs = [_ingest_run(store, run_id, group) for run_id, group in sorted(by_run.items())]
    return {"directory": str(directory), "runs": runs, "ignored": ignored}
