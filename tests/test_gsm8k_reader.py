import json

import pytest

from ingest.gsm8k import DatasetError, count_steps, parse_gold, problem_id, read_jsonl

GOOD = {
    "question": "Ann has 1,200 dollars. She spends 0.5 of it. What is left?",
    "answer": "She spends 1200*0.5=<<1200*0.5=600>>600.\nLeft: 1200-600=<<1200-600=600>>600.\n#### 600",
}


def write(tmp_path, lines: list[bytes]):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_good_file_loads_with_steps_and_gold(tmp_path):
    neg = {"question": "Temperature is 3. It drops 10.", "answer": "3-10=<<3-10=-7>>-7\n#### -7"}
    big = {"question": "Big?", "answer": "2*1000=<<2*1000=2000>>2000 #### 2,000"}
    path = write(
        tmp_path, [json.dumps(GOOD).encode(), json.dumps(neg).encode(), b"", json.dumps(big).encode()]
    )
    problems = read_jsonl(path).problems
    assert [p.n_steps for p in problems] == [2, 1, 1]
    assert [p.gold for p in problems] == [600.0, -7.0, 2000.0]
    assert problems[0].annotations == ["1200*0.5=600", "1200-600=600"]
    assert problems[0].source_id == "1" and problems[2].source_id == "4"


def test_bad_lines_reported_with_numbers_and_nothing_loaded(tmp_path):
    lines = [
        json.dumps(GOOD).encode(),
        b"{not json",
        json.dumps({"question": "q"}).encode(),
        json.dumps({"question": "q", "answer": "no final marker"}).encode(),
        b"\xff\xfe bad bytes",
        b"[1, 2]",
    ]
    path = write(tmp_path, lines)
    with pytest.raises(DatasetError) as err:
        read_jsonl(path)
    message = str(err.value)
    assert "5 malformed line(s), nothing loaded" in message
    for n in (2, 3, 4, 5, 6):
        assert f"line {n}:" in message
    assert "line 1:" not in message
    assert "--skip-invalid" in message


def test_skip_invalid_keeps_good_lines_and_lists_bad(tmp_path):
    path = write(tmp_path, [b"oops", json.dumps(GOOD).encode()])
    result = read_jsonl(path, skip_invalid=True)
    assert len(result.problems) == 1 and result.problems[0].gold == 600
    assert [b.line for b in result.bad] == [1]
    assert "invalid JSON" in result.bad[0].reason


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_problem_id_normalizes_whitespace_and_case():
    assert problem_id("Ann has  3 apples.") == problem_id("ann has 3 apples. ")
    assert problem_id("Ann has 3 apples.") != problem_id("Ann has 4 apples.")


def test_step_count_and_gold_helpers():
    assert count_steps("no annotations #### 3") == 0
    assert count_steps("<<1+1=2>> <<2*3=6>> <<6/2=3>>") == 3
    with pytest.raises(ValueError):
        parse_gold("The answer is 3")
