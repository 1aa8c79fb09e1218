"""Where problems come from: the seeded synthetic generator or a GSM8K-format JSONL file."""
from __future__ import annotations

from ingest.gsm8k import Problem, parse_record, read_jsonl
from ingest.synthetic import generate_split

SYNTHETIC = "synthetic"
# The evaluation stream's seed offset keeps eval problems apart from anything a caller seeds itself.
HELDOUT_SEED_OFFSET = 1_000_003


def synthetic_problems(n: int, seed: int = 0, steps: tuple[int, int] = (1, 6)) -> list[Problem]:
    """n held-out synthetic problems (never seen in training), step counts spread evenly."""
    records = generate_split(n, seed=seed + HELDOUT_SEED_OFFSET, split="heldout", steps=steps)
    return [parse_record(r, source=SYNTHETIC, source_id=f"{seed}:{i}") for i, r in enumerate(records)]


def load_problems(dataset: str = SYNTHETIC, n: int | None = None, seed: int = 0,
                  skip_invalid: bool = False) -> list[Problem]:
    """Problems from `synthetic` (n required) or a JSONL file (first n, or all when n is None)."""
    if dataset == SYNTHETIC:
        if n is None:
            raise ValueError("the synthetic dataset needs a problem count")
        return synthetic_problems(n, seed)
    problems = read_jsonl(dataset, skip_invalid=skip_invalid).problems
    return problems if n is None else problems[:n]
