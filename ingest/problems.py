"""A problem, whatever dataset it comes from, and its rows in the warehouse's `problems` table.

Every reader (GSM8K JSONL, the research scripts' dataset files, the synthetic generator through the
GSM8K parser) makes `Problem` objects; `problems_table` turns them into rows of the Arrow schema
warehouse/schema.py derives for `problems`, and `problems_hash` into a run's `dataset_hash`.
"""

# no `from __future__ import annotations`: it would shadow the function `annotations` (mypy no-redef)
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from warehouse.schema import arrow_schema

_ANNOTATION = re.compile(r"<<([^<>]*)>>")


def annotations(solution: str) -> list[str]:
    """The `a*b=c` calculator annotations (`<<a*b=c>>`) of a solution, in order."""
    return _ANNOTATION.findall(solution)


@dataclass(frozen=True)
class Problem:
    """One problem: `problem_id` is a hash of the normalized question (ingest.gsm8k.problem_id), so the
    same problem joins across datasets; `n_steps` is None where the source does not say."""

    problem_id: str
    question: str
    gold: float
    solution: str
    n_steps: int | None
    source: str = ""
    source_id: str = ""

    @property
    def annotations(self) -> list[str]:
        """The `a*b=c` calculator annotations of the solution, in order."""
        return annotations(self.solution)


def _row(p: Problem) -> dict[str, Any]:
    return {
        "problem_id": p.problem_id,
        "question": p.question,
        "gold_answer": p.gold,
        "solution": p.solution or None,
        "n_steps": p.n_steps,
        "source": p.source,
        "source_id": p.source_id,
    }


def problems_table(problems: Iterable[Problem]) -> pa.Table:
    """Problem objects as rows of the warehouse's `problems` table (its schema from warehouse/schema.py;
    an unknown n_steps and an empty solution stay NULL)."""
    return pa.Table.from_pylist([_row(p) for p in problems], schema=arrow_schema("problems"))


def problems_hash(problems: Iterable[Problem]) -> str:
    """A run's `dataset_hash`: sha256 over (problem id, gold) in run order, so runs over one problem
    list match."""
    h = hashlib.sha256()
    for p in problems:
        h.update(f"{p.problem_id}\t{p.gold}\n".encode())
    return h.hexdigest()
