"""Problems into the warehouse (`ingest gsm8k`): the rows of the `problems` table, from Problem objects.

A file is read completely, and every bad line reported, before the warehouse is even opened: a file with
a malformed line leaves nothing behind unless `skip_invalid` is given (SPEC 9).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from ingest.gsm8k import Problem, read_jsonl


def problems_table(problems: list[Problem]) -> pa.Table:
    """Problem objects as rows of the warehouse's `problems` table (unknown n_steps stays NULL)."""
    return pa.table({
        "problem_id": pa.array([p.problem_id for p in problems], pa.string()),
        "question": pa.array([p.question for p in problems], pa.string()),
        "gold_answer": pa.array([p.gold for p in problems], pa.float64()),
        "solution": pa.array([p.solution or None for p in problems], pa.string()),
        "n_steps": pa.array([p.n_steps for p in problems], pa.int16()),
        "source": pa.array([p.source for p in problems], pa.string()),
        "source_id": pa.array([p.source_id for p in problems], pa.string()),
    })


def ingest_gsm8k(db, path: str | Path, skip_invalid: bool = False) -> dict:
    """Load a GSM8K JSONL file into problems_base; problems already known keep their first row."""
    from warehouse.store import open_warehouse

    read = read_jsonl(path, skip_invalid=skip_invalid)  # raises, listing bad lines, before anything is written
    unique: dict[str, Problem] = {}
    for p in read.problems:
        unique.setdefault(p.problem_id, p)  # the same question twice: its first line wins
    added = open_warehouse(db).upsert_problems(problems_table(list(unique.values()))) if unique else 0
    by_steps: dict[str, int] = {}
    for p in unique.values():
        by_steps[str(p.n_steps)] = by_steps.get(str(p.n_steps), 0) + 1
    return {
        "file": str(path), "problems": len(read.problems), "distinct": len(unique), "added": added,
        "already_present": len(unique) - added, "by_steps": dict(sorted(by_steps.items(), key=lambda kv: int(kv[0]))),
        "skipped_lines": [{"line": b.line, "reason": b.reason} for b in read.bad],
    }


def problems_hash(problems) -> str:
    """A run's `dataset_hash`: sha256 over (problem id, gold) in run order, so runs over one problem list match."""
    h = hashlib.sha256()
    for p in problems:
        h.update(f"{p.problem_id}\t{p.gold}\n".encode())
    return h.hexdigest()
