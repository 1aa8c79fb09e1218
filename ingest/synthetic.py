"""Seeded generator of GSM8K-style word problems with 1..6 arithmetic steps.

Each problem follows one quantity through a chain of operations (buy, give away, double, split...),
so step k of the solution depends on step k-1: exactly the sequential structure that six continuous
thoughts can carry. Values stay within 0..99 so a small model can learn the arithmetic; the output is
plain GSM8K JSONL (`question`, `answer` with `<<a+b=c>>` annotations and `#### N`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

MAX_VALUE = 99

NAMES = [
    "Ann",
    "Ben",
    "Cara",
    "Dan",
    "Eva",
    "Finn",
    "Gia",
    "Hugo",
    "Ivy",
    "Jack",
    "Kim",
    "Leo",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Zoe",
    "Omar",
]
ITEMS = [
    "apples",
    "books",
    "coins",
    "stickers",
    "marbles",
    "pencils",
    "cookies",
    "cards",
    "shells",
    "stamps",
    "eggs",
    "toys",
    "candles",
    "buttons",
    "flowers",
    "balloons",
    "bottles",
    "rocks",
]

ADD = [
    "{n} buys {b} more {i}.",
    "{n} finds {b} more {i}.",
    "{n} gets {b} {i} from {o}.",
    "{o} gives {n} {b} {i}.",
    "{n} makes {b} more {i}.",
]
SUB = [
    "{n} gives {b} {i} to {o}.",
    "{n} loses {b} {i}.",
    "{n} sells {b} {i}.",
    "{n} eats {b} of the {i}.",
    "{o} takes {b} {i} from {n}.",
]
MUL = ["{n} ends up with {b} times as many {i}.", "The number of {i} {n} has grows {b} times."]
DIV = [
    "{n} splits the {i} into {b} equal groups and keeps one group.",
    "{n} shares the {i} equally among {b} friends, keeping one share.",
]

OPS = {"+": ADD, "-": SUB, "*": MUL, "/": DIV}


@dataclass(frozen=True)
class Step:
    op: str
    operand: int
    before: int
    after: int

    @property
    def annotation(self) -> str:
        return f"{self.before}{self.op}{self.operand}={self.after}"


def _apply(op: str, value: int, operand: int) -> int:
    return {"+": value + operand, "-": value - operand, "*": value * operand, "/": value // operand}[op]


def _legal_ops(value: int) -> list[tuple[str, list[int]]]:
    """Every (operation, operands) pair that keeps the value an integer within 0..MAX_VALUE."""
    options = []
    adds = [b for b in range(1, 16) if value + b <= MAX_VALUE]
    subs = [b for b in range(1, 16) if value - b >= 0]
    muls = [b for b in (2, 3) if value * b <= MAX_VALUE and value > 0]
    divs = [b for b in (2, 3) if value % b == 0 and value >= b]
    for op, operands in (("+", adds), ("-", subs), ("*", muls), ("/", divs)):
        if operands:
            options.append((op, operands))
    return options


def make_steps(rng: random.Random, n_steps: int) -> tuple[int, list[Step]]:
    start = rng.randint(2, 20)
    value, steps = start, []
    for _ in range(n_steps):
        op, operands = rng.choice(_legal_ops(value))
        operand = rng.choice(operands)
        after = _apply(op, value, operand)
        steps.append(Step(op, operand, value, after))
        value = after
    return start, steps


def make_problem(rng: random.Random, n_steps: int) -> dict:
    """One problem as a GSM8K record plus the intermediate values (for training supervision)."""
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    start, steps = make_steps(rng, n_steps)
    sentences = [f"{name} has {start} {item}."]
    lines = []
    for step in steps:
        sentences.append(rng.choice(OPS[step.op]).format(n=name, o=other, i=item, b=step.operand))
        lines.append(
            f"{name} has {step.before}{step.op}{step.operand}=<<{step.annotation}>>{step.after} {item} now."
        )
    sentences.append(f"How many {item} does {name} have now?")
    answer = "\n".join(lines) + f"\n#### {steps[-1].after}"
    return {
        "question": " ".join(sentences),
        "answer": answer,
        "values": [s.after for s in steps],
        "n_steps": n_steps,
    }


def parse_steps_range(spec: str) -> tuple[int, int]:
    """'1-6' -> (1, 6); '3' -> (3, 3)."""
    lo, _, hi = spec.partition("-")
    lo_i, hi_i = int(lo), int(hi or lo)
    if not 1 <= lo_i <= hi_i <= 6:
        raise ValueError(f"steps range must lie within 1-6, got {spec!r}")
    return lo_i, hi_i


def generate(n: int, seed: int = 0, steps: tuple[int, int] = (1, 6)) -> list[dict]:
    """n problems with step counts cycling evenly through the range (deterministic given seed)."""
    rng = random.Random(seed)
    lo, hi = steps
    counts = [lo + i % (hi - lo + 1) for i in range(n)]
    rng.shuffle(counts)
    return [make_problem(rng, k) for k in counts]


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")
    return path


def is_heldout(question: str) -> bool:
    """A stateless split: one problem in eight (by content hash) is reserved for evaluation.

    Training never sees a held-out problem, whatever seed or step count produced it.
    """
    from ingest.gsm8k import problem_id

    return int(problem_id(question)[:8], 16) % 8 == 0


def generate_split(n: int, seed: int, split: str, steps: tuple[int, int] = (1, 6)) -> list[dict]:
    """n problems from one side of the held-out split ("train" or "heldout"), steps spread evenly."""
    rng = random.Random(seed)
    lo, hi = steps
    want_heldout = split == "heldout"
    out = []
    for i in range(n):
        k = lo + i % (hi - lo + 1)
        while True:
            record = make_problem(rng, k)
            if is_heldout(record["question"]) == want_heldout:
                out.append(record)
                break
    return out
