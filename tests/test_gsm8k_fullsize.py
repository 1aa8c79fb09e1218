"""GSM8K at full size (issue 18 item 5): every problem of both real splits, gold answer and step count
checked against an independent re-parse of its raw line, and both splits ingested twice (the second time
adds nothing).

The files are looked for under ingest/data/gsm8k/ (shipped with the project) and then ../shared/data/gsm8k/
beside the repository; a split found in neither is skipped, saying where it was looked for.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

import warehouse as wh
from ingest.gsm8k import ingest_gsm8k, parse_record, read_jsonl
from warehouse.vocab import stratum_of

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLACES = (ROOT / "ingest" / "data" / "gsm8k", ROOT.parent / "shared" / "data" / "gsm8k")
SIZES = {"test": 1319, "train": 7473}
# Measured on the published files (openai/grade-school-math 3101c7d): problems per difficulty stratum, and
# how many have no `<<...>>` annotation at all (n_steps 0, in stratum <=2). docs/USAGE.md quotes them.
STRATA = {
    "test": {"<=2": 440, "3": 364, "4": 290, "5+": 225, "no annotation": 18},
    "train": {"<=2": 2674, "3": 2137, "4": 1424, "5+": 1238, "no annotation": 95},
}


def split_file(split: str) -> Path:
    for place in PLACES:
        if (place / f"{split}.jsonl").is_file():
            return place / f"{split}.jsonl"
    pytest.skip(f"GSM8K {split}.jsonl is in neither {' nor '.join(str(p) for p in PLACES)}")


def expected(raw: str) -> tuple[Decimal, int]:
    """The gold answer and step count of a raw line, read without the project's parser: the text after
    the last `#### `, commas removed, as a Decimal; and the number of `<<` ... `>>` pairs."""
    answer = json.loads(raw)["answer"]
    gold = Decimal(answer.rsplit("#### ", 1)[1].strip().replace(",", ""))
    return gold, len(re.findall(r"<<.*?>>", answer, flags=re.S))


@pytest.mark.parametrize("split", ["test", "train"])
def test_every_gold_answer_and_step_count_matches_the_raw_line(split):
    path = split_file(split)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == SIZES[split]
    mismatches, shapes = [], Counter()
    for number, raw in enumerate(lines, start=1):
        gold, steps = expected(raw)
        problem = parse_record(json.loads(raw), source=path.name, source_id=str(number))
        # the float stored must be the Decimal's nearest double, and its printed form the same number
        if Decimal(repr(problem.gold)) != gold or problem.n_steps != steps:
            mismatches.append((number, str(gold), problem.gold, steps, problem.n_steps))
        tail = json.loads(raw)["answer"].rsplit("#### ", 1)[1]
        shapes.update(k for k, c in (("thousands", ","), ("negative", "-"), ("decimal", ".")) if c in tail)
    assert mismatches == []
    assert shapes["thousands"] > 0  # the awkward forms are really exercised (`#### 1,000`, `#### -3`)
    assert shapes["negative"] > 0
    # the reader as a whole agrees: every line read, none bad
    read = read_jsonl(path)
    assert len(read.problems) == SIZES[split] and read.bad == []


@pytest.mark.parametrize("split", ["test", "train"])
def test_strata_counts(split):
    problems = read_jsonl(split_file(split)).problems
    counts = Counter(stratum_of(p.n_steps) for p in problems)
    counts["no annotation"] = sum(p.n_steps == 0 for p in problems)
    assert dict(counts) == STRATA[split]


def test_both_splits_ingest_and_reingest_adds_nothing(tmp_path):
    paths = {split: split_file(split) for split in SIZES}
    db = tmp_path / "w"
    for split, path in paths.items():
        first = ingest_gsm8k(db, path)
        assert first["problems"] == SIZES[split] and first["skipped_lines"] == []
        again = ingest_gsm8k(db, path)
        assert again["added"] == 0 and again["already_present"] == first["distinct"]
    distinct = {p.problem_id for path in paths.values() for p in read_jsonl(path).problems}
    with wh.open_warehouse(db, read_only=True).reader() as con:
        rows = con.execute("SELECT count(*), count(DISTINCT problem_id) FROM problems").fetchall()
    assert rows == [(len(distinct), len(distinct))]  # one row per distinct problem, none twice
