"""A warehouse is one folder: a DuckLake catalog, its Parquet data files, its identity and its locks.

    results/warehouse/
      codi-warehouse.json   identity: format, warehouse id, where the catalog is (checked on every open)
      catalog.sqlite        the DuckLake catalog (SQLite, WAL mode), unless the catalog is PostgreSQL
      data/                 the Parquet data files; the catalog stores their paths relative to data/
      locks/<run>.lock      one writer per run (flock: the kernel drops it when the process dies)

DuckLake (DuckDB's lakehouse format) gives every commit ACID snapshot semantics: readers in other
processes see whole commits only, a killed writer's commit is either in or out, and files are only
ever listed by the catalog, never found by a glob. The extensions load offline from the PyPI packages
`duckdb-extension-ducklake`, `-sqlite` and `-postgres`.

The identity file ties the folder to its catalog: the catalog holds the same warehouse id, so data
files and a catalog from two different warehouses are never mixed, and a folder holding only data
files (or a catalog without its identity) is refused instead of adopted. The catalog records its data
path as the relative `data/`; every connection here attaches with the folder's absolute data path,
so a moved or copied folder works from any directory. A folder this process cannot write (shared
read-only) is read through a private copy of its catalog (snapshot_catalog), creating nothing in it.
Copy a folder only while nothing writes it (docs/USAGE.md: a plain copy can take catalog.sqlite and its
-wal at different moments). A plain DuckDB client needs two lines:

    ATTACH 'ducklake:sqlite:results/warehouse/catalog.sqlite' AS wh
        (DATA_PATH 'results/warehouse/data/', OVERRIDE_DATA_PATH true, READ_ONLY);
    USE wh;
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import glob
import json
import logging
import os
import random
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

import duckdb

from warehouse.errors import WarehouseError

IDENTITY = "codi-warehouse.json"
CATALOG = "catalog.sqlite"
DATA = "data"
LOCKS = "locks"
FORMAT = "codi-warehouse/ducklake"
ALIAS = "wh"
METADATA = f"__ducklake_metadata_{ALIAS}"
READ_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 600.0
NOTICE_AFTER_S = 1.0  # a wait this long is said at once (shorter ones are two writers taking turns)
# What the warehouse has to tell its user while it works (a wait on another process's lock): records on
# this logger, never prints. Unconfigured, Python shows warnings on stderr; cli.py prints them as notes.
log = logging.getLogger("codi.warehouse")
# The file name of each extension must be what DuckDB derives its entry point from.
_EXTENSIONS = {"ducklake": "ducklake", "sqlite": "sqlite_scanner", "postgres": "postgres_scanner"}
# Transient: another process holds the SQLite catalog's write lock, or committed first (DuckLake
# retries conflicts itself a few times, then reports them).
_RETRYABLE = (
    "database is locked",
    "Could not set lock",
    "Conflicting lock",
    "Transaction conflict",
    "conflict",
    "busy",
)


class NotAWarehouse(WarehouseError):
    """--db names something that is not a codi warehouse folder (or one torn apart)."""


class WarehouseBusy(TimeoutError):
    """The catalog stayed locked by other processes for the whole timeout."""


class OldLayout(WarehouseError):
    """--db names a warehouse of the old single-file layout (`x.duckdb` + `x.shards/`)."""


@dataclass(frozen=True)
class Catalog:
    """Where a warehouse's catalog lives: its SQLite file in the folder, or a PostgreSQL database."""

    kind: str  # "sqlite" | "postgres"
    dsn: str = ""  # libpq key=value string, for postgres

    def attach_target(self, folder: Path) -> str:
        if self.kind == "sqlite":
            return f"ducklake:sqlite:{folder / CATALOG}"
        return f"ducklake:postgres:{self.dsn}"

    @classmethod
    def parse(cls, spec: str | None) -> Catalog:
        """`sqlite` (the default) or `postgres:<libpq dsn>`, e.g. `postgres:dbname=codi host=db1`."""
        if not spec or spec == "sqlite":
            return cls("sqlite")
        if spec.startswith("postgres:") and spec[len("postgres:") :].strip():
            return cls("postgres", spec[len("postgres:") :].strip())
        raise WarehouseError(
            f"catalog {spec!r}: use sqlite, or postgres:<dsn> (e.g. postgres:dbname=codi host=db1)"
        )

    def describe(self) -> dict:
        return {"kind": self.kind} if self.kind == "sqlite" else {"kind": self.kind, "dsn": self.dsn}


def sql_str(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def extension_file(name: str) -> Path:
    """The extension's file from its PyPI package, under the name DuckDB needs (a cached symlink)."""
    spec = importlib_util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError(
            f"the DuckDB extension package duckdb-extension-{name} is missing; "
            "reinstall codi-warehouse (pip install -e .)"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(
        glob.glob(str(package / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"))
    )
    if not found:
        raise WarehouseError(
            f"duckdb-extension-{name} has no build for duckdb {duckdb.__version__}; "
            "reinstall codi-warehouse (pip install -e .)"
        )
    target = _EXTENSIONS[name]
    if target == name:
        return Path(found[0])
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "codi-warehouse"
        / "duckdb-extensions"
    )
    link = cache / f"v{duckdb.__version__}" / f"{target}.duckdb_extension"
    if not (link.is_symlink() and os.readlink(link) == found[0]):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{target}.{secrets.token_hex(4)}")
        os.symlink(found[0], tmp)
        os.replace(tmp, link)
    return link


def new_connection(catalog: Catalog) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the extensions this catalog needs loaded from local files."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("ducklake", catalog.kind):
        con.execute(f"LOAD {sql_str(extension_file(name))}")
    return con


def is_retryable(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.Error) and any(m in text for m in _RETRYABLE)


def retrying(fn, timeout: float, what: str, folder: Path | None = None):
    """Call fn() until it does not fail with a transient lock/conflict error, with jittered backoff.

    Once it has waited NOTICE_AFTER_S, one warning on the `codi.warehouse` logger says who holds the
    lock (pid, program, reading or writing, from the folder's SQLite catalog when that can be told),
    how long it will wait at most and how to stop. After `timeout` seconds: WarehouseBusy, naming them.
    """
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.005
    told = False
    while True:
        try:
            return fn()
        except duckdb.Error as exc:
            if not is_retryable(exc):
                raise
            now = time.monotonic()
            if now >= deadline:
                holders = lock_holders(folder) if folder is not None else []
                who = ("held by " + "; ".join(holders)) if holders else "held by other processes"
                raise WarehouseBusy(
                    f"{what}: the warehouse catalog stayed locked for {timeout:.0f} s, {who}; "
                    "let them finish (or stop them), then try again"
                ) from exc
            if not told and now - started >= NOTICE_AFTER_S:
                told = True
                log.warning(waiting_line(what, lock_holders(folder) if folder is not None else [], timeout))
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


def waiting_line(what: str, holders: list[str], timeout: float) -> str:
    """What a wait on the catalog says: who holds it, for how long we wait at most, how to stop."""
    pids = [h.split()[1] for h in holders if h.startswith("pid ")]
    who = "held by " + "; ".join(holders) if holders else "held by another process"
    stop = f"stop it with `kill {' '.join(pids)}`, or " if pids else ""
    return (
        f"{what}: the warehouse catalog is locked, {who}; waiting up to {timeout:.0f} s for it "
        f"({stop}press Ctrl-C here to give up: what is committed stays)"
    )


def _program(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(" ".join(w.decode(errors="replace").split()) for w in words if w)  # one line
    return text if len(text) <= 80 else text[:77] + "..."


def lock_holders(folder: Path) -> list[str]:
    """Other processes holding POSIX locks on the SQLite catalog's files, from /proc/locks (Linux):
    'pid 123 (python cli.py run ...), writing'. Empty where that cannot be told (another OS, a
    PostgreSQL catalog, no holder)."""
    inodes = {}
    for name in (CATALOG, CATALOG + "-wal", CATALOG + "-shm"):
        with contextlib.suppress(OSError):
            found = os.stat(folder / name)
            inodes[(os.major(found.st_dev), os.minor(found.st_dev), found.st_ino)] = name
    if not inodes:
        return []
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    modes: dict[int, set[str]] = {}
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a process waiting for the lock, not holding it
            continue
        try:
            kind, mode, pid, where = fields[1], fields[3], int(fields[4]), fields[5]
            major, minor, inode = where.split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except (IndexError, ValueError):
            continue
        if kind in ("POSIX", "OFDLCK") and key in inodes and pid != os.getpid():
            modes.setdefault(pid, set()).add("writing" if mode == "WRITE" else "reading")
    return [
        f"pid {pid} ({_program(pid)}), {'writing' if 'writing' in found else 'reading'}"
        for pid, found in sorted(modes.items())
    ]


# --- identity -------------------------------------------------------------------------------------
def read_identity(folder: Path) -> dict:
    path = folder / IDENTITY
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAWarehouse(
            f"{path} is unreadable ({type(exc).__name__}); restore it from a backup of the warehouse folder"
        ) from None
    if (
        not isinstance(found, dict)
        or found.get("format") != FORMAT
        or not isinstance(found.get("warehouse_id"), str)
    ):
        raise NotAWarehouse(f"{path} is not a codi warehouse identity file; point --db at a warehouse folder")
    return found


def catalog_of(identity: dict) -> Catalog:
    spec = identity.get("catalog") or {"kind": "sqlite"}
    if spec.get("kind") == "postgres":
        return Catalog("postgres", str(spec.get("dsn", "")))
    return Catalog("sqlite")


def takes_concurrent_writers(folder: str | os.PathLike | None) -> bool:
    """True when `folder` is a warehouse whose catalog is PostgreSQL: shard workers commit into it
    directly. False for a SQLite catalog or no warehouse yet (workers write portable shards then)."""
    if folder is None:
        return False
    path = Path(folder).absolute()
    if inspect(path) != "warehouse":
        return False
    return catalog_of(read_identity(path)).kind == "postgres"


def inspect(folder: Path) -> str:
    """'new' (nothing there, or an empty folder), 'warehouse', or raise saying what the path is."""
    if not folder.exists():
        return "new"
    if folder.is_file():
        with contextlib.suppress(OSError):
            if folder.read_bytes()[8:12] == b"DUCK":
                raise OldLayout(
                    f"{folder} is a warehouse file of the old layout (.duckdb + .shards); convert it "
                    f"with `python cli.py upgrade {folder} --to NEW_FOLDER`"
                )
        raise NotAWarehouse(
            f"{folder} is a file, not a warehouse folder; point --db at a warehouse folder, "
            "or at a new path to create one"
        )
    entries = [p.name for p in folder.iterdir()]
    if IDENTITY in entries:
        return "warehouse"
    if not entries:
        return "new"
    hint = (
        " (it holds DuckLake files without their identity file: restore the whole folder from a backup)"
        if CATALOG in entries or DATA in entries
        else ""
    )
    raise NotAWarehouse(
        f"{folder} is not a codi warehouse (no {IDENTITY}){hint}; point --db at a warehouse "
        "folder, or at a new path to create one"
    )


def write_identity(folder: Path, warehouse_id: str, catalog: Catalog) -> None:
    body = {
        "format": FORMAT,
        "warehouse_id": warehouse_id,
        "catalog": catalog.describe(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tmp = folder / f".{IDENTITY}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / IDENTITY)


def prepare_sqlite(folder: Path) -> None:
    """A new SQLite catalog in WAL mode: readers never block the writer, nor the writer them."""
    db = sqlite3.connect(folder / CATALOG)
    try:
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()


def snapshot_catalog(folder: Path) -> Path:
    """A private copy of a read-only folder's SQLite catalog, in a temporary folder (removed at exit).

    SQLite reads a WAL-mode database only where it can create the `-shm` file beside it, so a folder
    shared read-only (another user's, a read-only mount) is read through this copy: the catalog, and
    its `-wal` when there is one, copied and turned into one plain file. The data files are read where
    they are. The copy is the catalog as it was at open; commits made later by the folder's owner are
    seen by opening it again.
    """
    tmp = Path(tempfile.mkdtemp(prefix="codi-warehouse-catalog-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    shutil.copyfile(folder / CATALOG, tmp / CATALOG)
    with contextlib.suppress(FileNotFoundError):
        if (folder / (CATALOG + "-wal")).stat().st_size:
            shutil.copyfile(folder / (CATALOG + "-wal"), tmp / (CATALOG + "-wal"))
    db = sqlite3.connect(tmp / CATALOG)
    try:
        db.execute("PRAGMA journal_mode=DELETE")  # takes in the WAL's commits; read-only opens need no -shm
    finally:
        db.close()
    return tmp


def attach(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    catalog: Catalog,
    read_only: bool,
    create_data_path: bool = False,
) -> None:
    """ATTACH the lake as `wh` (data path: this folder's data/, wherever the folder now is) and USE it.

    Read-only on a folder this process cannot write, the SQLite catalog is read through a private copy
    (snapshot_catalog): nothing is created in the folder."""
    if create_data_path:  # stored relative, so copies of the folder work anywhere
        options = f"DATA_PATH {sql_str(DATA + '/')}"
    else:
        options = f"DATA_PATH {sql_str(str(folder / DATA) + '/')}, OVERRIDE_DATA_PATH true"
    target = catalog.attach_target(folder)
    if read_only:
        options += ", READ_ONLY"
        if catalog.kind == "sqlite" and not os.access(folder, os.W_OK):
            target = catalog.attach_target(snapshot_catalog(folder))
    con.execute(f"ATTACH {sql_str(target)} AS {ALIAS} ({options})")
    con.execute(f"USE {ALIAS}")
