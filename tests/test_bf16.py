"""bfloat16: the batched engine against the one-condition-at-a-time reference, within stated tolerances.

In float32 on CPU the two agree exactly on answers and to ~1e-6 on KL (tests/test_batching.py). In
bfloat16 (the CUDA default) batching changes the order of floating-point sums, which bf16's 8-bit
mantissa shows: on gpt2-tiny, 4 problems x 19 conditions, 74 of 76 answers agree and |delta KL at the
answer number| is at most 0.07 nats (0.11 for kl_max, 0.15 for log p(gold)). The tolerances below are
the promise: at least 90% of answers agree; where they do, KL and JS within 0.15 nats and log p(gold)
within 0.3, and the median KL difference under 0.02 nats. bf16 against float32 differs more (answers
95%, KL up to 0.25 nats) and is not a promise.
"""

from __future__ import annotations

import polars as pl
import pytest
import torch

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.interventions.reference import run_reference
from engine.model.checkpoints import load_model
from ingest.datasets import synthetic_problems

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it


@pytest.fixture(scope="module")
def pair() -> pl.DataFrame:
    model = load_model("gpt2-tiny", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    problems = synthetic_problems(4, seed=3)
    opts = EngineOptions((3,), tuple(build_conditions([3], ("zero", "gauss", "shuffle"), (1.0,))), 0, "none")
    keys = ["problem_id", "condition_id"]
    batched = run_chunk(model, problems, opts).results
    reference = run_reference(model, problems, opts).results
    return batched.join(reference, on=keys, suffix="_ref")


def test_bf16_batched_engine_agrees_with_the_reference_within_tolerance(pair):
    assert pair.height == 4 * (1 + 6 * 3)
    same = pair.filter(pl.col("answer_text") == pl.col("answer_text_ref"))
    assert same.height / pair.height >= 0.9
    for column, tolerance in (("kl_answer", 0.15), ("kl_max", 0.15), ("js_answer", 0.15), ("logp_gold", 0.3)):
        diff = (same[column] - same[f"{column}_ref"]).abs().drop_nulls()
        assert diff.len() > 0 and diff.max() <= tolerance, (column, diff.max())
    assert (same["kl_answer"] - same["kl_answer_ref"]).abs().median() < 0.02
    assert (same["correct"] == same["correct_ref"]).all()
