"""The research scripts' problem files (SPEC 10): records with `gsm8k_id` and `question`.

Their result files name a problem by `gsm8k_id` only ("test_86", "train_53"); the dataset file the
script read (e.g. `full_dataset_100.json`, `attention_dataset_100_train.json`) is the one link from that
id to the question text, and so to our content-hash problem id. Records look like
`{"gsm8k_id", "question", "answer": 42 or "42", "full_solution": "... #### 42", "reasoning_steps", ...}`;
the file is a JSON array (as the scripts wrote it) or JSONL. n_steps counts the `<<...>>` annotations
of `full_solution` as for GSM8K files; without a solution it is `reasoning_steps`, else unknown (NULL).
Like the GSM8K reader, a file with a bad record loads nothing and names every bad record.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ingest.files import require_regular
from ingest.gsm8k import GROUPED, DatasetError, NoFinalAnswer, count_steps, parse_gold, problem_id
from ingest.problems import Problem


@dataclass(frozen=True)
class ResearchDataset:
    path: Path
    sha256: str
    by_id: dict[str, Problem]  # gsm8k_id -> problem

    def __len__(self) -> int:
        return len(self.by_id)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def number(value: object, what: str = "value") -> float:
    """A JSON number or numeric string ("1,200", "$36", "-7.5") as a float; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a number")  # noqa: TRY004 - bad input, reported with its record
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            raise ValueError(f"{what} {_short(value)} is not a finite number (too large to store)") from None
    elif isinstance(value, str):
        text = value.strip().removeprefix("$")
        if "," in text and not GROUPED.fullmatch(text):  # never 1,2,3 read as 123
            raise ValueError(
                f"{what} {_short(value)} is not a number: a comma separates thousands only between "
                "groups of exactly three digits (1,234)"
            )
        try:
            result = float(text.replace(",", ""))
        except ValueError:
            raise ValueError(f"{what} {_short(value)} is not a number") from None
    else:
        raise ValueError(f"{what} {value!r} is not a number")  # noqa: TRY004 - bad input, reported with its record
    if not math.isfinite(result):
        raise ValueError(f"{what} {_short(value)} is not a finite number")
    return result


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:14]}...{text[-8:]} ({len(text)} characters)"


def research_problem(record: object, source: str) -> Problem:
    """One dataset record as a Problem with our content-hash id (source_id = its gsm8k_id)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")  # noqa: TRY004 - reported per record
    gsm8k_id = record.get("gsm8k_id")
    if isinstance(gsm8k_id, bool) or not isinstance(gsm8k_id, str | int) or str(gsm8k_id).strip() == "":
        raise ValueError("missing gsm8k_id")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{gsm8k_id}: missing or empty question")
    answer, solution = record.get("answer"), record.get("full_solution")
    if isinstance(answer, str) and "####" in answer:  # a GSM8K-style answer with its solution
        solution, answer = solution or answer, None
    if solution is not None and not isinstance(solution, str):
        raise ValueError(f"{gsm8k_id}: full_solution is not a string")
    final = _final_answer(solution)
    if answer is not None:
        gold = number(answer, "answer")
        if final is not None and not math.isclose(gold, final, rel_tol=1e-6, abs_tol=1e-9):
            raise ValueError(f"{gsm8k_id}: answer {answer!r} disagrees with full_solution's #### {final:g}")
    elif final is not None:
        gold = final
    else:
        raise ValueError(f"{gsm8k_id}: no answer and no full_solution ending in '#### N'")
    n_steps: int | None
    if solution:
        n_steps = count_steps(solution)
    else:
        steps = record.get("reasoning_steps")
        n_steps = steps if isinstance(steps, int) and not isinstance(steps, bool) else None
    return Problem(
        problem_id(question),
        question.strip(),
        gold,
        (solution or "").strip(),
        n_steps,
        source,
        str(gsm8k_id).strip(),
    )


def _final_answer(solution: str | None) -> float | None:
    """The number after a solution's final `####`; None without one; ValueError when it is malformed."""
    try:
        return parse_gold(solution) if solution else None
    except NoFinalAnswer:
        return None


def _records(path: Path) -> list[tuple[str, object]]:
    """(label, record) pairs: `record I` (0-based index) of a JSON array, or `line N` of JSONL."""
    text = path.read_bytes().decode("utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from exc
        except RecursionError:
            raise DatasetError(
                f"{path}: JSON nested too deeply to read (a dataset is an array of flat records)"
            ) from None
        return [(f"record {i}", r) for i, r in enumerate(data)]
    out: list[tuple[str, object]] = []
    for number_, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((f"line {number_}", json.loads(line)))
            except json.JSONDecodeError as exc:
                out.append(
                    (f"line {number_}", DatasetError(f"invalid JSON ({exc.msg} at column {exc.colno})"))
                )
            except RecursionError:
                out.append(
                    (
                        f"line {number_}",
                        DatasetError("JSON nested too deeply to read (a record is one flat object)"),
                    )
                )
    return out


def read_research_dataset(path: str | Path) -> ResearchDataset:
    """Read a research dataset file; DatasetError naming every bad record (nothing is loaded then)."""
    path = Path(path)
    require_regular(path, "dataset file", DatasetError)  # before opening: a pipe would block or be consumed
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        records = _records(path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    by_id: dict[str, Problem] = {}
    bad: list[str] = []
    for label, record in records:
        try:
            if isinstance(record, DatasetError):
                raise record
            problem = research_problem(record, source=path.name)
        except ValueError as exc:
            bad.append(f"{label}: {exc}")
            continue
        known = by_id.setdefault(problem.source_id, problem)
        if known.problem_id != problem.problem_id:
            bad.append(f"{label}: gsm8k_id {problem.source_id} appears twice with different questions")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DatasetError(f"{path}: {len(bad)} malformed record(s), nothing loaded: {shown}")
    if not by_id:
        raise DatasetError(f"{path}: no problems in the dataset file")
    return ResearchDataset(path, file_sha256(path), by_id)
