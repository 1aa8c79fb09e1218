"""Where problems come from: the seeded synthetic generator, a GSM8K-format JSONL file, or the dataset
file of the older research scripts (records with `gsm8k_id`), so a new run can cover the problems of a
legacy one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ingest.files import require_regular
from ingest.gsm8k import DatasetError, parse_record, read_jsonl
from ingest.problems import Problem
from ingest.research_dataset import read_research_dataset
from ingest.synthetic import generate_split

SYNTHETIC = "synthetic"
# The evaluation stream's seed offset keeps eval problems apart from anything a caller seeds itself.
HELDOUT_SEED_OFFSET = 1_000_003


def distinct(problems: list[Problem]) -> list[Problem]:
    """The first problem of each id, in order."""
    kept: dict[str, Problem] = {}
    for p in problems:
        kept.setdefault(p.problem_id, p)
    return list(kept.values())


def synthetic_problems(n: int, seed: int = 0, steps: tuple[int, int] = (1, 6)) -> list[Problem]:
    """n held-out synthetic problems (never seen in training), step counts spread evenly.

    The generator may repeat a question (a few in 3,000); callers that need distinct problems take
    `distinct` of a longer list: a longer list starts with the shorter one (same seed).
    """
    records = generate_split(n, seed=seed + HELDOUT_SEED_OFFSET, split="heldout", steps=steps)
    return [parse_record(r, source=SYNTHETIC, source_id=f"{seed}:{i}") for i, r in enumerate(records)]


def load_problems(
    dataset: str = SYNTHETIC, n: int | None = None, seed: int = 0, skip_invalid: bool = False
) -> list[Problem]:
    """Problems from `synthetic` (n required) or a file (first n, or all when n is None): GSM8K JSONL,
    or a research dataset (skip_invalid does not apply to those: they load whole or not at all)."""
    if dataset == SYNTHETIC:
        if n is None:
            raise ValueError("the synthetic dataset needs a problem count")
        return synthetic_problems(n, seed)
    require_regular(
        dataset, "dataset file", DatasetError
    )  # before the first look: a pipe would block or be consumed
    if is_research_dataset(dataset):
        problems = list(read_research_dataset(dataset).by_id.values())
        unknown = [p.source_id for p in problems if p.n_steps is None]
        if unknown:  # runs need step counts (difficulty strata, the donor pool)
            raise DatasetError(
                f"{dataset}: {len(unknown)} problem(s) with neither full_solution nor reasoning_steps, "
                f"so n_steps is unknown: {', '.join(unknown[:5])}"
            )
    else:
        problems = read_jsonl(dataset, skip_invalid=skip_invalid).problems
    problems = unique_problems(problems, dataset)
    return problems if n is None else problems[:n]


def unique_problems(problems: list[Problem], dataset: str | Path) -> list[Problem]:
    """Each question once (its first entry): a run or an evaluation must not count a problem twice.

    Repeats are noted on stderr; a repeat with another gold answer is an error (which one is right?).
    """
    kept: dict[str, Problem] = {}
    repeats = []
    for p in problems:
        known = kept.setdefault(p.problem_id, p)
        if known is p:
            continue
        if known.gold != p.gold:
            raise DatasetError(
                f"{dataset}: entry {p.source_id} repeats the question of entry {known.source_id} "
                f"with another answer ({p.gold:g} vs {known.gold:g}); fix or remove one of them"
            )
        repeats.append(f"entry {p.source_id} repeats entry {known.source_id}")
    if repeats:
        print(
            f"note: {dataset}: {len(repeats)} repeated question(s) left out, each problem runs once "
            f"({', '.join(repeats[:5])}{', ...' if len(repeats) > 5 else ''})",
            file=sys.stderr,
        )
    return list(kept.values())


def is_research_dataset(path: str | Path) -> bool:
    """A JSON array, or JSONL whose first record has a `gsm8k_id`: the research scripts' problem files."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return False  # the GSM8K reader reports a missing file
    text = head.lstrip()
    if text.startswith("["):
        return True
    try:
        record = json.loads(text.split("\n", 1)[0])
    except (ValueError, RecursionError):
        return False  # the GSM8K reader reports the line
    # a GSM8K line that happens to carry a gsm8k_id still has its '#### N' answer: the GSM8K reader takes it
    return isinstance(record, dict) and "gsm8k_id" in record and "####" not in str(record.get("answer", ""))
