"""GSM8K JSONL reader (SPEC 9): problems with content-hash ids, gold answers and step counts, and
`ingest_gsm8k`, which loads a file's problems into the warehouse (`ingest gsm8k`).

A malformed line is never loaded silently wrong: every bad line is reported with its number, and by
default nothing at all is loaded from a file that has one (`skip_invalid=True` keeps the good lines).
A question that comes again with another answer is a bad line (which answer is right is unknown); one
that comes again with the same answer is kept, and left to the caller to run or store once.
"""

import hashlib
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.files import require_regular
from ingest.problems import Problem, annotations, problems_table
from warehouse.store import open_warehouse

_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")
# A comma is a thousands separator only between groups of exactly three digits: 1,234 and 12,345.6 are
# numbers, 1,2,3 and 12,34 are not (never read as 123 or 1234).
GROUPED = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


@dataclass
class BadLine:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ReadResult:
    problems: list[Problem]
    bad: list[BadLine] = field(default_factory=list)


class DatasetError(ValueError):
    """A dataset file that cannot be loaded as asked; the message lists the bad lines."""


def normalize_question(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).lower()


def problem_id(question: str) -> str:
    """A hash of the normalized question, so the same problem joins across datasets."""
    return hashlib.sha256(normalize_question(question).encode()).hexdigest()[:16]


def count_steps(solution: str) -> int:
    """n_steps = the number of `<<...>>` calculator annotations."""
    return len(annotations(solution))


class NoFinalAnswer(ValueError):
    """A solution without a final `#### <number>`."""


def parse_number(text: str, what: str = "{}") -> float:
    """A decimal number as a gold answer: thousands commas only in groups of three, finite; ValueError else.

    `what` describes the number in messages, `{}` standing for it (e.g. "final answer '#### {}'").
    """
    shown = what.format(text if len(text) <= 24 else f"{text[:12]}...{text[-6:]}")
    if "," in text and not GROUPED.fullmatch(text):
        raise ValueError(
            f"{shown} is malformed: a comma separates thousands only between groups of exactly "
            "three digits (1,234); fix the number"
        )
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        raise ValueError(f"{shown} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(
            f"{shown} ({len(text)} characters) is not a finite number (too large to store); fix or "
            "remove the record"
        )
    return value


def parse_gold(solution: str) -> float:
    """The number after the final `####` (thousands commas removed); NoFinalAnswer when there is none,
    ValueError when it is malformed (1,2,3) or too large to store."""
    match = _FINAL.search(solution.strip())
    if not match:
        raise NoFinalAnswer("answer has no final '#### <number>'")
    return parse_number(match.group(1), "final answer '#### {}'")


def parse_record(record: object, source: str = "", source_id: str = "") -> Problem:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")  # noqa: TRY004 - a bad line, reported
    for key in ("question", "answer"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"missing or empty string field {key!r}")
    question, solution = record["question"].strip(), record["answer"].strip()
    return Problem(
        problem_id(question),
        question,
        parse_gold(solution),
        solution,
        count_steps(solution),
        source,
        str(record.get("id", source_id)),
    )


def read_jsonl(path: str | Path, skip_invalid: bool = False) -> ReadResult:
    """Read a GSM8K JSONL file; raise DatasetError listing bad lines unless skip_invalid."""
    path = Path(path)
    require_regular(path, "dataset file", DatasetError)  # before opening: a pipe would block or be consumed
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}; check the path")
    problems, bad = [], []
    first: dict[str, tuple[int, float]] = {}  # problem id -> (line, gold) where the question first came
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                bad.append(BadLine(number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            if not text:
                continue
            try:
                record = json.loads(text)
                problem = parse_record(record, source=path.name, source_id=str(number))
                line, gold = first.setdefault(problem.problem_id, (number, problem.gold))
                if gold != problem.gold:
                    raise ValueError(
                        f"same question as line {line} with another answer ({problem.gold:g} here, "
                        f"{gold:g} there)"
                    )
                problems.append(problem)
            except json.JSONDecodeError as exc:
                bad.append(BadLine(number, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            except RecursionError:
                bad.append(BadLine(number, "JSON nested too deeply to read (a record is one flat object)"))
            except ValueError as exc:
                bad.append(BadLine(number, str(exc)))
    if bad and not skip_invalid:
        shown = "; ".join(str(b) for b in bad[:10]) + (f"; ... {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DatasetError(
            f"{path}: {len(bad)} malformed line(s), nothing loaded "
            f"(use --skip-invalid to load the good ones): {shown}"
        )
    return ReadResult(problems, bad)


def ingest_gsm8k(db: str | os.PathLike, path: str | Path, skip_invalid: bool = False) -> dict[str, Any]:
    """Load a GSM8K JSONL file into problems_base; problems already known keep their first row.

    A file is read completely, and every bad line reported, before the warehouse is even opened: a file
    with a malformed line leaves nothing behind unless `skip_invalid` is given. Returns the counts: lines
    read (`problems`), `distinct`, `added`, `already_present`, `by_steps` and the `skipped_lines`.
    """
    read = read_jsonl(
        path, skip_invalid=skip_invalid
    )  # raises, listing bad lines, before anything is written
    unique: dict[str, Problem] = {}
    for p in read.problems:
        unique.setdefault(p.problem_id, p)  # the same question twice: its first line wins
    added = 0
    if unique:
        with open_warehouse(db) as store:
            added = store.upsert_problems(problems_table(unique.values()))
    by_steps: dict[str, int] = {}
    for p in unique.values():
        by_steps[str(p.n_steps)] = by_steps.get(str(p.n_steps), 0) + 1
    return {
        "file": str(path),
        "problems": len(read.problems),
        "distinct": len(unique),
        "added": added,
        "already_present": len(unique) - added,
        "by_steps": dict(sorted(by_steps.items(), key=lambda kv: int(kv[0]))),
        "skipped_lines": [{"line": b.line, "reason": b.reason} for b in read.bad],
    }
