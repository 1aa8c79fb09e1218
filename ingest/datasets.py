"""Where problems come from: the seeded synthetic generator, the built-in GSM8K splits (`gsm8k-test`,
`gsm8k-train`), a GSM8K-format JSONL file, or the dataset file of the older research scripts (records
with `gsm8k_id`), so a new run can cover the problems of a legacy one; and how a run samples them
(`sample_order`: first, random, stratified).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from ingest.files import require_regular
from ingest.gsm8k import DatasetError, parse_record, read_jsonl
from ingest.problems import Problem
from ingest.research_dataset import read_research_dataset
from ingest.synthetic import generate_split
from warehouse.vocab import STRATA, stratum_of

SYNTHETIC = "synthetic"
# The GSM8K splits shipped in ingest/data/gsm8k/ (README.md there: source, commit, license): name ->
# (file, its published sha256). A name means the built-in file even when the current directory holds a
# file of that name (give `./gsm8k-test` for that one).
BUILTIN_DIR = Path(__file__).resolve().parent / "data" / "gsm8k"
BUILTIN = {
    "gsm8k-test": ("test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
    "gsm8k-train": ("train.jsonl", "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
}
SAMPLES = ("first", "random", "stratified")
_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 already checked
# The evaluation stream's seed offset keeps eval problems apart from anything a caller seeds itself.
HELDOUT_SEED_OFFSET = 1_000_003


def builtin_path(name: str) -> Path:
    """The file of a built-in dataset, checked against its published sha256 (once per file version)."""
    file, expected = BUILTIN[name]
    path = BUILTIN_DIR / file
    try:
        stat = path.stat()
    except OSError:
        raise DatasetError(
            f"built-in dataset {name}: {path} is missing; reinstall, or restore it with "
            "`git checkout ingest/data/gsm8k`"
        ) from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise DatasetError(
                f"built-in dataset {name}: {path} has sha256 {digest[:12]}..., not the published "
                f"{expected[:12]}... (the file was modified); restore it: `git checkout ingest/data/gsm8k`"
            )
        _verified[key] = digest
    return path


def resolve_dataset(dataset: str | Path) -> str | Path:
    """A dataset spec as what to read: `synthetic` as itself, a built-in name (gsm8k-test, gsm8k-train) as
    its verified file, anything else as a file path. A built-in name wins over a file of that name in the
    current directory (noted on stderr; `./gsm8k-test` reads the file)."""
    if isinstance(dataset, str) and dataset in BUILTIN:
        if Path(dataset).exists():
            print(
                f"note: {dataset} is the built-in dataset; for the file of that name here give ./{dataset}",
                file=sys.stderr,
            )
        return builtin_path(dataset)
    return dataset


def check_sample(sample: str, sample_seed: int, dataset: str) -> None:
    """--sample and --sample-seed: a known protocol; neither for the synthetic set (stratified already,
    other samples by --problem-seed); a seed only where it draws (random, stratified)."""
    if sample not in SAMPLES:
        raise ValueError(f"--sample must be one of {', '.join(SAMPLES)}, got {sample!r}")
    if dataset == SYNTHETIC and (sample != "first" or sample_seed != 0):
        raise ValueError(
            "--sample and --sample-seed apply to dataset files and the built-in gsm8k-test/gsm8k-train; "
            "the synthetic set is stratified already (25 per stratum by default): pick another with "
            "--problem-seed"
        )
    if sample == "first" and sample_seed != 0:
        raise ValueError(
            "--sample-seed draws for --sample random or stratified; --sample first takes no seed"
        )


def sample_order(problems: list[Problem], sample: str, seed: int) -> list[list[Problem]]:
    """The problems in the order a protocol takes them, as one list (first, random) or one per difficulty
    stratum (stratified: steps <=2, 3, 4, 5+; a problem with no `<<...>>` annotation has 0 steps, so <=2).

    first: file order. random: a permutation seeded by `seed` (random.Random(seed).shuffle). stratified:
    each stratum's problems permuted by their own generator, seeded by (seed, stratum). A run takes each
    list's first problems that fit (too long ones, under --skip-invalid, are replaced by the next in the
    same order), so a sample is reproducible from (dataset, sample, seed, N).
    """
    if sample == "first":
        return [list(problems)]
    if sample == "random":
        order = list(problems)
        random.Random(seed).shuffle(order)
        return [order]
    if sample != "stratified":
        raise ValueError(f"--sample must be one of {', '.join(SAMPLES)}, got {sample!r}")
    buckets = []
    for stratum in STRATA:
        bucket = [p for p in problems if stratum_of(p.n_steps or 0) == stratum]
        random.Random(f"{seed}/{stratum}").shuffle(bucket)
        buckets.append(bucket)
    return buckets


def stratum_counts(problems: list[Problem]) -> dict[str, int]:
    """Problems per difficulty stratum (steps <=2, 3, 4, 5+; no annotation counts as 0 steps)."""
    counts = dict.fromkeys(STRATA, 0)
    for p in problems:
        counts[stratum_of(p.n_steps or 0)] += 1
    return counts


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
    """Problems from `synthetic` (n required), a built-in GSM8K split (`gsm8k-test`, `gsm8k-train`) or a
    file (first n, or all when n is None): GSM8K JSONL, or a research dataset (skip_invalid does not apply
    to those: they load whole or not at all)."""
    if dataset == SYNTHETIC:
        if n is None:
            raise ValueError("the synthetic dataset needs a problem count")
        return synthetic_problems(n, seed)
    name = dataset
    dataset = str(resolve_dataset(dataset))
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
    problems = unique_problems(problems, name)
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
