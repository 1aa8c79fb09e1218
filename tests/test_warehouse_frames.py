"""warehouse.frames: batches given as dicts keep every key, whichever row it first appears in."""

from __future__ import annotations

import pytest

import warehouse as wh
from warehouse.frames import conform, to_arrow


def test_dict_rows_take_the_union_of_their_keys():
    rows = [{"a": 1}, {"b": "x", "a": 2.5}, {"c": True}]
    table = to_arrow(rows)
    assert table.column_names == ["a", "b", "c"]  # first-seen order; from_pylist kept only "a"
    assert table.to_pylist() == [
        {"a": 1.0, "b": None, "c": None},
        {"a": 2.5, "b": "x", "c": None},
        {"a": None, "b": None, "c": True},
    ]
    assert to_arrow({"a": 1}).to_pylist() == [{"a": 1}]
    assert to_arrow([]).num_rows == 0


def test_conform_keeps_a_key_the_first_row_lacks():
    rows = [
        {"condition_id": 0, "method": "baseline", "correct": True},  # a baseline row: no thought, no sigma
        {"condition_id": 1, "method": "gauss", "thought": 2, "sigma": 0.5, "correct": False},
    ]
    table = conform(rows, "results", "run-x", "p1")
    assert table.column("sigma").to_pylist() == [None, 0.5]
    assert table.column("thought").to_pylist() == [None, 2]
    with pytest.raises(ValueError, match="unknown column"):
        conform(
            [{"condition_id": 0, "method": "baseline"}, {"condition_id": 1, "method": "zero", "sigmaa": 1.0}],
            "results",
            "run-x",
            "p1",
        )  # a typo in a later row is refused, not dropped


def test_dict_rows_reach_the_warehouse_whole(tmp_path):
    store = wh.open_warehouse(tmp_path / "w", durable=False)
    run = store.begin_run({"frames": "dicts"})
    problem = {"problem_id": "p1", "question": "q?", "gold_answer": 1.0}
    results = [
        {"problem_id": "p1", "condition_id": 0, "method": "baseline", "correct": True},
        {
            "problem_id": "p1",
            "condition_id": 1,
            "layer": 3,
            "thought": 2,
            "method": "gauss",
            "sigma": 0.5,
            "correct": False,
            "flipped": True,
            "kl_answer": 0.25,
        },
    ]
    store.append_problems(run, [problem], results)
    with store.reader() as con:
        got = con.execute(
            "SELECT layer, thought, sigma, flipped, kl_answer FROM results WHERE condition_id = 1"
        ).fetchall()
    assert got == [(3, 2, 0.5, True, 0.25)]
