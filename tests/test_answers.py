import math

import pytest

from engine.model.answers import is_correct, parse_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is: 18", 18.0),
        ("The answer is: 1,234", 1234.0),
        ("The answer is: 1,234,567.5", 1234567.5),
        ("The answer is: -7", -7.0),
        ("The answer is: 0.25", 0.25),
        ("He had 3 then 5. The answer is: 12 apples, not 40", 12.0),  # marker wins over the last number
        ("#### 42", 42.0),
        ("so 3+4=7 #### -3.5", -3.5),
        ("first 3 then 9", 9.0),  # no marker: the last number
        ("costs 2,500 dollars", 2500.0),
        ("The answer is: none", None),
        ("no number here", None),
        ("", None),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


def test_marker_without_number_falls_back_to_last_number():
    assert parse_answer("computed 5 and 6. The answer is: unknown") == 6.0


def test_commas_between_numbers_are_not_thousands_separators():
    assert parse_answer("values 1,2,3") == 3.0


def test_is_correct_tolerance():
    assert is_correct(18.0, 18)
    assert is_correct(1e9 * (1 + 1e-7), 1e9)
    assert not is_correct(18.01, 18)
    assert not is_correct(None, 18)
    assert not is_correct(math.nan, 18)
    assert is_correct(0.0, 0)
    assert is_correct(1e-10, 0)  # absolute tolerance where gold is 0 (relative tolerance of 0 is 0)
    assert not is_correct(1e-8, 0)


def test_hashes_mark_the_answer_before_later_numbers():
    assert parse_answer("#### 5, then 6 more") == 5.0  # GSM8K's marker, not the last number
    assert parse_answer("The answer is 7 #### 5") == 7.0  # "The answer is" first
