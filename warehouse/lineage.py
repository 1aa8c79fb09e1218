"""What a run row records about where its numbers came from: ids, hashes, code and library versions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = (
    "torch",
    "transformers",
    "safetensors",
    "tokenizers",
    "duckdb",
    "polars",
    "pyarrow",
    "numpy",
    "sqlalchemy",
)


def new_run_id() -> str:
    """Sortable by start time and readable: `20261121-161500-3f9a2c` (UTC)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def new_warehouse_id() -> str:
    """A warehouse's identity, stamped in its catalog and its folder's identity file."""
    return "wh-" + secrets.token_hex(8)


def canonical_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def code_version() -> str:
    """The git commit (with `-dirty` when the tree has changes); the package version outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return "codi-warehouse " + metadata.version("codi-warehouse")
        except metadata.PackageNotFoundError:
            return "unknown"


def library_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported)."""
    found = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found
