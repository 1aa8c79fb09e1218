"""`eval` of the bundled gpt2-tiny on real (non-synthetic) problems says plainly that it is not a GSM8K
model (issue 18 item 4); `--skip-invalid` passes over problems too long for its context and counts them; the
teacher's explicit CoT stops at the end of the context instead of running past it (an IndexError before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from engine.model.checkpoints import load_model
from engine.runs.evaluate import bundled_note

CONTEXT = 256  # the bundled gpt2-tiny's n_positions
GSM8K_LIKE = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
        "in May. How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
        "babysitting. How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "A town had 1,200 people. 300 moved away and 1,000 moved in. How many live there now?",
        "answer": "1200-300=<<1200-300=900>>900\n900+1000=<<900+1000=1900>>1900\n#### 1,900",
    },
]


def write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_eval_of_the_bundled_model_on_a_gsm8k_file_carries_the_note(tmp_path):
    path = write(tmp_path / "three.jsonl", GSM8K_LIKE)
    out = invoke("eval", "--dataset", path, "--problems", 3, "--no-teacher")
    assert out.exit_code == 0, out.output
    notes = [line for line in out.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert "trained on synthetic problems" in notes[0] and "not a GSM8K model" in notes[0]
    assert "1.9% (21/1,107" in notes[0]  # the measured accuracy, as README.md gives it
    assert "problem(s) too long" not in out.output  # nothing too long here
    as_json = json.loads(invoke("eval", "--dataset", path, "--problems", 3, "--no-teacher", "--json").output)
    assert as_json["n"] == 3 and as_json["skipped_too_long"] == 0
    assert "not a GSM8K model" in as_json["note"]


def test_no_note_on_synthetic_problems_or_another_model():
    out = invoke("eval", "--problems", 2, "--no-teacher")
    assert out.exit_code == 0, out.output
    assert "note:" not in out.output
    assert bundled_note("gpt2-tiny", None, "synthetic") is None
    assert bundled_note("gpt2-tiny", "/some/checkpoint", "gsm8k.jsonl") is None  # not the bundled weights
    assert bundled_note("gpt2", None, "gsm8k.jsonl") is None
    assert "not a GSM8K model" in (bundled_note("gpt2-tiny", None, "gsm8k.jsonl") or "")


def test_skip_invalid_passes_over_too_long_problems_and_counts_them(tmp_path):
    long = {"question": "Ann has 3 apples. " * 60 + "How many?", "answer": "#### 7"}
    path = write(tmp_path / "long.jsonl", [GSM8K_LIKE[0], long, *GSM8K_LIKE[1:]])
    refused = invoke("eval", "--dataset", path, "--problems", 3, "--no-teacher")
    assert refused.exit_code != 0 and "too long" in refused.output
    out = invoke("eval", "--dataset", path, "--problems", 3, "--no-teacher", "--skip-invalid")
    assert out.exit_code == 0, out.output
    assert "on 3 " in out.output and "skipped 1 problem(s) too long" in out.output


@pytest.fixture(scope="module")
def tiny():
    return load_model("gpt2-tiny")


def test_the_teacher_stops_at_the_end_of_the_context(tiny, tmp_path):
    """A question of 200 tokens fits the student (200 + 8 + 24 <= 256) but not the teacher's 128-token CoT
    (200 + 1 + 128 > 256); its CoT is cut where the context ends, and a short question in the same batch
    keeps its full budget (its answer is the one it gives alone)."""

    def tokens(text: str) -> int:
        return len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])

    text = "How many?"
    while tokens(text) < 200:
        text = "x " + text
    assert 200 <= tokens(text) <= 210
    short = GSM8K_LIKE[0]["question"]
    together = tiny.teacher_answer([text, short])
    assert together[1] == tiny.teacher_answer([short])[0]
    out = invoke(
        "eval",
        "--dataset",
        write(tmp_path / "one.jsonl", [{"question": text, "answer": "#### 7"}]),
        "--problems",
        1,
    )
    assert out.exit_code == 0, out.output
