"""Property-based tests (hypothesis): the answer parser, the GSM8K reader and the step counter.

Examples in tests/test_answers.py and tests/test_gsm8k_reader.py; these check the rules over generated
inputs: numbers in every format come back exactly, the marker wins, nothing ever raises but the one
documented error, every line of a file is either loaded or reported, and the step count is the number
of `<<...>>` annotations whatever surrounds them.
"""

from __future__ import annotations

import json
import math
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.model.answers import is_correct, parse_answer
from ingest.gsm8k import (
    DatasetError,
    annotations,
    count_steps,
    normalize_question,
    parse_gold,
    problem_id,
    read_jsonl,
)

# No deadline: the machine is shared with training jobs, and a slow example is not a wrong one.
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

# words without digits, '<', '>', '#' or the marker's capital T, so they add no number and no marker
WORDS = st.text(st.sampled_from("abcdefghij klmnopqrs?!.:;\n"), max_size=40)
INTS = st.integers(min_value=-(10**12), max_value=10**12)
DECIMALS = st.decimals(min_value=-(10**9), max_value=10**9, places=3, allow_nan=False, allow_infinity=False)


def written(value, commas: bool) -> str:
    """How a model or a dataset writes a number: optional thousands separators, plain decimals."""
    if isinstance(value, int):
        return f"{value:,}" if commas else str(value)
    text = f"{value:,f}" if commas else f"{value:f}"
    return text


# --- answer parser -----------------------------------------------------------------------------------
@SETTINGS
@given(value=st.one_of(INTS, DECIMALS), commas=st.booleans(), before=WORDS, after=WORDS)
def test_the_number_after_the_marker_comes_back_exactly(value, commas, before, after):
    text = f"{before} The answer is: {written(value, commas)} {after}"
    assert parse_answer(text) == float(value)
    assert is_correct(parse_answer(text), float(value))


@SETTINGS
@given(value=st.one_of(INTS, DECIMALS), decoys=st.lists(INTS, max_size=4), words=WORDS)
def test_the_marker_wins_over_every_other_number(value, decoys, words):
    noise = " ".join(f"{d} {words}" for d in decoys)
    assert parse_answer(f"{noise} The answer is: {written(value, True)}. Then {noise}") == float(value)
    assert parse_answer(f"{noise} #### {written(value, False)}") == float(value)


@SETTINGS
@given(numbers=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=5), words=WORDS)
def test_without_a_marker_the_last_number_counts(numbers, words):
    text = " ".join(f"{words} {n}" for n in numbers)
    assert parse_answer(text) == float(numbers[-1])


@SETTINGS
@given(text=WORDS)
def test_no_digit_means_no_answer(text):
    assert parse_answer(text) is None
    assert parse_answer(f"The answer is: {text}") is None
    assert not is_correct(parse_answer(text), 0.0)


@SETTINGS
@given(text=st.text())
def test_any_text_parses_to_a_number_or_none(text):
    value = parse_answer(text)
    assert value is None or isinstance(value, float)  # huge digit strings may be inf; is_correct says False
    if value is not None and not math.isfinite(value):
        assert not is_correct(value, 1.0)


@SETTINGS
@given(gold=st.one_of(INTS, DECIMALS).map(float))
def test_is_correct_tolerance_is_relative(gold):
    assert is_correct(gold, gold)
    assert not is_correct(gold + max(abs(gold) * 1e-4, 1e-3), gold)


# --- step counter --------------------------------------------------------------------------------------
EXPRESSION = st.text(st.sampled_from("0123456789+-*/=. ,"), min_size=1, max_size=15)


@SETTINGS
@given(steps=st.lists(EXPRESSION, max_size=8), filler=st.lists(WORDS, min_size=9, max_size=9))
def test_step_count_is_the_number_of_annotations(steps, filler):
    solution = "".join(f"{filler[i]}<<{s}>>" for i, s in enumerate(steps)) + filler[-1] + " #### 4"
    assert count_steps(solution) == len(steps)
    assert annotations(solution) == steps


@SETTINGS
@given(text=st.text(st.characters(exclude_characters="<>")))
def test_text_without_brackets_has_no_steps(text):
    assert count_steps(text) == 0


@SETTINGS
@given(opened=st.integers(1, 4), words=WORDS)
def test_unclosed_or_nested_brackets_are_not_steps(opened, words):
    assert count_steps("<<" * opened + words) == 0
    assert count_steps(f"<<1+<<2=3>>=4>>{words}") == 1  # only the innermost pair is an annotation


# --- GSM8K reader --------------------------------------------------------------------------------------
QUESTIONS = st.text(min_size=1, max_size=60).filter(lambda q: q.strip())
RECORDS = st.lists(
    st.tuples(QUESTIONS, st.lists(EXPRESSION, max_size=6), st.one_of(INTS, DECIMALS), st.booleans()),
    min_size=1,
    max_size=8,
    unique_by=lambda r: normalize_question(r[0].strip()),
)


def write_lines(lines: list[bytes]) -> Path:
    handle = tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False)  # noqa: SIM115
    with handle:
        handle.write(b"\n".join(lines) + b"\n")
    return Path(handle.name)


@SETTINGS
@given(records=RECORDS)
def test_valid_records_come_back_with_gold_steps_and_ids(records):
    lines = []
    for question, steps, gold, commas in records:
        solution = " then ".join(f"<<{s}>>" for s in steps) + f"\n#### {written(gold, commas)}"
        lines.append(json.dumps({"question": question, "answer": solution}).encode())
    path = write_lines(lines)
    try:
        result = read_jsonl(path)
    finally:
        path.unlink()
    assert not result.bad
    assert [p.gold for p in result.problems] == [float(Decimal(str(g))) for _, _, g, _ in records]
    assert [p.n_steps for p in result.problems] == [len(s) for _, s, _, _ in records]
    assert [p.problem_id for p in result.problems] == [problem_id(q.strip()) for q, _, _, _ in records]
    assert [p.source_id for p in result.problems] == [str(i + 1) for i in range(len(records))]


JSON_LINES = st.dictionaries(
    st.sampled_from(["question", "answer", "id"]), st.one_of(st.text(max_size=20), INTS, st.just("#### 3"))
).map(lambda r: json.dumps(r).encode())
LINES = st.lists(
    st.one_of(st.binary(max_size=40), JSON_LINES).map(lambda b: b.replace(b"\n", b" ")), max_size=10
)


def blank(line: bytes) -> bool:
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


@SETTINGS
@given(lines=LINES)
def test_every_line_is_loaded_or_reported_never_a_crash(lines):
    path = write_lines(lines)
    try:
        lenient = read_jsonl(path, skip_invalid=True)
        try:
            strict = read_jsonl(path)
        except DatasetError as exc:
            strict = None
            assert "nothing loaded" in str(exc) and "--skip-invalid" in str(exc)
    finally:
        path.unlink()
    non_blank = [i + 1 for i, line in enumerate(lines) if not blank(line)]
    assert len(lenient.problems) + len(lenient.bad) == len(non_blank)
    assert {b.line for b in lenient.bad} <= set(non_blank)
    assert (strict is None) == bool(lenient.bad)
    if strict is not None:
        assert strict.problems == lenient.problems


@SETTINGS
@given(gold=st.one_of(INTS, DECIMALS), commas=st.booleans(), text=WORDS)
def test_gold_is_the_number_after_the_final_marker(gold, commas, text):
    assume("####" not in text)
    assert parse_gold(f"{text}\n#### {written(gold, commas)}") == float(Decimal(str(gold)))


@SETTINGS
@given(
    question=QUESTIONS,
    spaces=st.lists(st.text(" \t\n\u00a0\u2003", min_size=1, max_size=3), min_size=30, max_size=30),
)
def test_problem_id_ignores_spacing(question, spaces):
    words = question.split()
    assume(words)
    respaced = spaces[0] + "".join(w + spaces[(i + 1) % len(spaces)] for i, w in enumerate(words))
    assert problem_id(respaced) == problem_id(" ".join(words))


@SETTINGS
@given(
    words=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789?.,", min_size=1, max_size=8), min_size=1, max_size=8
    )
)
def test_problem_id_ignores_case(words):
    text = " ".join(words)
    assert problem_id(text.upper()) == problem_id(text) == problem_id(text.title())
