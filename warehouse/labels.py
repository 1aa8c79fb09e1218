"""Labels a person gives a run, as MLflow and W&B have them: a name, key=value tags and a note.

They are stored in the `runs` row (columns name, tags, note; schema 4) but are not part of the run's
config: they never change its config hash, and `--resume` accepts new ones. A name need not be unique;
a run can be named wherever a run id is taken (`--run NAME`) when exactly one run carries it.
Tags are a JSON object of strings, so SQL reads them as `tags->>'key'`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from warehouse.errors import WarehouseError

LABEL_FIELDS = ("name", "tags", "note")
MAX_NAME = 100
MAX_VALUE = 500
MAX_NOTE = 10_000
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}")


def check_name(name: str) -> str:
    """A run name: one line of at most 100 characters, not blank (outer spaces dropped)."""
    text = name.strip()
    if not text:
        raise WarehouseError("a run name cannot be blank; give some text, e.g. --name baseline")
    if len(text) > MAX_NAME or any(ch in text for ch in "\n\r\t"):
        raise WarehouseError(f"run name {text[:40]!r}...: use one line of at most {MAX_NAME} characters")
    return text


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise WarehouseError(f"a run note holds at most {MAX_NOTE:,} characters; this one has {len(note):,}")
    return note


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise WarehouseError(
            f"tag key {key!r}: use letters, digits and _ . : / - (at most 64, not starting with . : / -)"
        )
    return key


def check_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as stored: every key checked, every value a one-line string of at most 500 characters."""
    out = {}
    for key, value in tags.items():
        text = str(value)
        if len(text) > MAX_VALUE or "\n" in text or "\r" in text:
            raise WarehouseError(f"tag {key}: the value must be one line of at most {MAX_VALUE} characters")
        out[check_key(str(key))] = text
    return dict(sorted(out.items()))


def parse_tag(text: str) -> tuple[str, str]:
    """`key=value` (the value may be empty or hold `=`) -> (key, value)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise WarehouseError(f"tag {text!r}: write key=value, e.g. --tag lr=0.1")
    return check_key(key.strip()), value.strip()


def parse_tags(texts: Iterable[str]) -> dict[str, str]:
    """Several `key=value` (a key given twice: the last wins, as in a dict literal)."""
    return check_tags(dict(parse_tag(t) for t in texts))


def tags_json(tags: Mapping[str, Any] | None) -> str | None:
    """The stored form: a JSON object with sorted keys, or NULL for no tags."""
    return json.dumps(check_tags(tags), sort_keys=True) if tags else None


def read_tags(stored: str | Mapping[str, Any] | None) -> dict[str, str]:
    if not stored:
        return {}
    return dict(json.loads(stored) if isinstance(stored, str) else stored)


def format_tags(tags: Mapping[str, str] | None) -> str:
    """`k=v k2=v2` (empty text for none)."""
    return " ".join(f"{k}={v}" for k, v in (tags or {}).items())
