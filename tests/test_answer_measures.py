"""JS divergence and entropy where the answer number is predicted, not at EOT.

At EOT the next token is the answer template's first word ("The"), which every corruption leaves
nearly certain, so divergences there read ~0 even for rows whose answer changed (the seed code's bug
class 2). On the trained bundled model, answers that a corruption flipped must show a clearly
positive JS divergence and a rise in entropy at the answer number, while the EOT versions stay tiny.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.model.checkpoints import load_model
from engine.runs.local import donor_sites
from ingest.datasets import synthetic_problems


@pytest.fixture(scope="module")
def results() -> pl.DataFrame:
    model = load_model("gpt2-tiny")
    problems = synthetic_problems(12, seed=1)
    opts = EngineOptions((3,), tuple(build_conditions([3], ("zero", "random"))), 0, "none")
    return run_chunk(model, problems, opts, donor_sites(model, problems, opts, ("random",))).results


def test_flipped_answers_diverge_at_the_answer_number_not_at_eot(results):
    base = results.filter(pl.col("method") == "baseline").select("problem_id", base_entropy="entropy_answer")
    rows = results.filter(pl.col("method") != "baseline").join(base, on="problem_id")
    flipped = rows.filter(pl.col("flipped"))
    assert flipped.height >= 20  # enough flips on this fixture to say something
    js, js_eot = flipped["js_answer"].drop_nulls(), flipped["js_first"].drop_nulls()
    assert js.len() == flipped.height  # every baseline here answers with a number
    assert js.mean() > 0.2 and js.mean() > 1000 * js_eot.mean()
    assert (js > 0.01).mean() > 0.8  # the rest changed a later digit, not the first number token
    assert (js <= math.log(2) + 1e-9).all()  # JS in nats is bounded by ln 2
    change = flipped["entropy_answer"] - flipped["base_entropy"]
    assert change.mean() > 0.05  # a flipped answer is a less certain one, on average
    kept = rows.filter(~pl.col("flipped") & pl.col("correct"))
    assert js.mean() > kept["js_answer"].mean()  # and it diverges more than answers that held


def test_baseline_rows_measure_themselves(results):
    base = results.filter(pl.col("method") == "baseline")
    for column in ("kl_first", "kl_answer", "kl_max", "js_first", "js_answer", "disruption"):
        assert (base[column] == 0.0).all(), column
    assert (base["entropy_answer"] > 0).all() and (base["entropy_first"] >= 0).all()
