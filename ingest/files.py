"""Input paths checked before they are opened: a pipe would block (a FIFO with no writer) or be consumed
by a first look at it (`--dataset <(cat file)` is a /dev/fd pipe), and a directory or a device is not
the file the command means.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = (
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: str | Path) -> str | None:
    """What `path` is when it exists but is not a regular file ("a pipe", ...); None for a regular file or
    a path that does not exist. Uses stat only (follows links, never opens: opening a FIFO blocks)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in KINDS if test(mode)), "not a regular file")


def require_regular(path: str | Path, what: str, error: type[Exception] = ValueError) -> None:
    """Raise `error` (one line: what the path is, what to do) unless `path` is a regular file or missing."""
    kind = special_kind(path)
    if kind is None:
        return
    if kind == "a directory":
        raise error(f"{what} {path} is a directory, not a file; give the file itself")
    if kind == "a pipe":
        raise error(f"{what} {path} is a pipe, not a file; save it to a file first and give that file")
    raise error(
        f"{what} {path} is {kind}, not a regular file; save its content to a file first and give that file"
    )
