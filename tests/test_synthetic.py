from ingest.datasets import synthetic_problems
from ingest.gsm8k import count_steps, parse_gold
from ingest.synthetic import MAX_VALUE, generate, generate_split, is_heldout, parse_steps_range


def _evaluate(annotation: str) -> tuple[int, int]:
    lhs, rhs = annotation.split("=")
    for op in "+-*/":
        if op in lhs:
            a, b = lhs.split(op)
            value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[
                op
            ]
            return value, int(rhs)
    raise AssertionError(annotation)


def test_deterministic_given_seed_and_varies_with_seed():
    assert generate(20, seed=3) == generate(20, seed=3)
    assert generate(20, seed=3) != generate(20, seed=4)


def test_step_counts_arithmetic_and_bounds():
    records = generate(120, seed=5, steps=(1, 6))
    assert sorted({r["n_steps"] for r in records}) == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert count_steps(r["answer"]) == r["n_steps"]
        assert parse_gold(r["answer"]) == r["values"][-1]
        chain = r["answer"].split("<<")[1:]
        for link, value in zip(chain, r["values"], strict=True):
            computed, stated = _evaluate(link.split(">>")[0])
            assert computed == stated == value and 0 <= value <= MAX_VALUE
        # each step starts from the previous result
        firsts = [
            int("".join(c for c in link.split(">>")[0].split("=")[0] if c.isdigit())[: len(str(v))])
            for link, v in zip(chain[1:], r["values"][:-1], strict=True)
        ]
        assert firsts == r["values"][:-1]


def test_heldout_split_is_disjoint_from_training():
    train = generate_split(200, seed=1, split="train")
    held = generate_split(50, seed=2, split="heldout")
    assert not any(is_heldout(r["question"]) for r in train)
    assert all(is_heldout(r["question"]) for r in held)


def test_synthetic_problems_are_heldout_and_spread_over_steps():
    problems = synthetic_problems(12, seed=0)
    assert [p.n_steps for p in problems] == [1, 2, 3, 4, 5, 6] * 2
    assert all(is_heldout(p.question) for p in problems)


def test_steps_range_parsing():
    assert parse_steps_range("1-6") == (1, 6)
    assert parse_steps_range("3") == (3, 3)
    for bad in ("0-3", "4-2", "1-7"):
        try:
            parse_steps_range(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
