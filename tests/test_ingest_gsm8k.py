"""`ingest gsm8k`: problems with content-hash ids and n_steps; bad lines named; nothing partial is loaded."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import warehouse as wh
from cli import cli
from ingest.datasets import load_problems
from ingest.gsm8k import DatasetError, ingest_gsm8k, problem_id
from ingest.output import format_gsm8k
from ingest.problems import problems_table
from warehouse.schema import arrow_schema

GOOD = [
    {
        "question": "Ann has 1,200 dollars and spends half. How much is left?",
        "answer": "Half is 1,200/2=<<1200/2=600>>600.\nLeft: 1200-600=<<1200-600=600>>600.\n#### 600",
    },
    {
        "question": "A rope is 2.5 m long. Three ropes are joined. How long?",
        "answer": "3*2.5=<<3*2.5=7.5>>7.5\n#### 7.5",
    },
    {
        "question": "It is 3 degrees. The temperature drops 10 degrees. What is it now?",
        "answer": "3-10=<<3-10=-7>>-7\n#### -7",
    },
    {
        "question": "A farm sells 1,000 eggs a day for 12 days, then 500 more. How many?",
        "answer": "1000*12=<<1000*12=12000>>12000\n12000+500=<<12000+500=12500>>12500\n"
        "12500*1=<<12500*1=12500>>12500\n#### 12,500",
    },
]
BAD = {
    2: b"{not json",
    4: json.dumps({"question": "No answer here"}).encode(),
    6: json.dumps({"question": "q", "answer": "no final marker"}).encode(),
    7: b"\xff\xfe",
}


def gsm8k_file(tmp_path):
    """Good lines 1, 3, 5, 8; malformed lines 2, 4, 6, 7 (bad JSON, missing answer, no ####, bad bytes)."""
    good = iter(GOOD)
    lines = [BAD[n] if n in BAD else json.dumps(next(good)).encode() for n in range(1, 9)]
    path = tmp_path / "gsm8k.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def problems_in(db):
    with wh.open_warehouse(db, read_only=True).reader() as con:
        return con.execute(
            "SELECT problem_id, gold_answer, n_steps, source_id FROM problems ORDER BY source_id"
        ).fetchall()


def test_malformed_lines_are_each_reported_and_nothing_is_loaded(tmp_path):
    db = tmp_path / "w"
    result = invoke("ingest", "gsm8k", gsm8k_file(tmp_path), "--db", db)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "4 malformed line(s), nothing loaded" in result.output
    for n in BAD:
        assert f"line {n}:" in result.output
    for n in (1, 3, 5, 8):
        assert f"line {n}:" not in result.output
    assert not db.exists()  # the file is checked before the warehouse is touched
    with pytest.raises(DatasetError, match="nothing loaded"):  # `run --dataset FILE` reads it the same way
        load_problems(str(gsm8k_file(tmp_path)))


def test_skip_invalid_loads_good_lines_with_steps_and_lists_the_rest(tmp_path):
    db = tmp_path / "w"
    result = invoke("ingest", "gsm8k", gsm8k_file(tmp_path), "--skip-invalid", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [b["line"] for b in payload["skipped_lines"]] == sorted(BAD)
    assert payload["added"] == 4 and payload["by_steps"] == {"1": 2, "2": 1, "3": 1}
    rows = problems_in(db)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (600.0, 2, "1"),
        (7.5, 1, "3"),
        (-7.0, 1, "5"),
        (12500.0, 3, "8"),
    ]
    assert [r[0] for r in rows] == [problem_id(g["question"]) for g in GOOD]
    assert [p.n_steps for p in load_problems(str(gsm8k_file(tmp_path)), skip_invalid=True)] == [2, 1, 1, 3]


def test_ingesting_again_adds_nothing_and_text_output_names_skipped_lines(tmp_path):
    db = tmp_path / "w"
    path = gsm8k_file(tmp_path)
    first = invoke("ingest", "gsm8k", path, "--skip-invalid", "--db", db)
    assert (
        first.exit_code == 0
        and "4 added" in first.stdout
        and "skipped line 7: not valid UTF-8" in first.stdout
    )
    again = invoke("ingest", "gsm8k", path, "--skip-invalid", "--db", db, "--json")
    assert json.loads(again.stdout)["added"] == 0 and json.loads(again.stdout)["already_present"] == 4
    assert len(problems_in(db)) == 4


def test_missing_file_is_one_line(tmp_path):
    result = invoke("ingest", "gsm8k", tmp_path / "nope.jsonl", "--db", tmp_path / "w")
    assert result.exit_code != 0 and "dataset file not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_ingest_gsm8k_returns_counts_the_cli_prints(tmp_path):
    path, db = gsm8k_file(tmp_path), tmp_path / "w"
    result = ingest_gsm8k(db, path, skip_invalid=True)
    assert (result["problems"], result["added"], result["already_present"]) == (4, 4, 0)
    assert [b["line"] for b in result["skipped_lines"]] == [2, 4, 6, 7]
    again = ingest_gsm8k(db, path, skip_invalid=True)
    assert format_gsm8k(again) == invoke("ingest", "gsm8k", path, "--skip-invalid", "--db", db).stdout


def test_problem_rows_have_the_schema_of_the_problems_table(tmp_path):
    table = problems_table(load_problems(str(gsm8k_file(tmp_path)), skip_invalid=True))
    assert table.schema == arrow_schema("problems") and table.num_rows == 4
    assert table.column("n_steps").to_pylist() == [2, 1, 1, 3]
