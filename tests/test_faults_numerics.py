"""NaN and inf produced by a corruption are recorded, never crash the run and never pass for numbers.

A Gaussian sigma of 1e30 is a finite float32, but the forward pass overflows to inf and then NaN. The
rows are kept (the corrupted answer counts as a failure, as any answer that is not the gold one), their
KL, JS, entropy, log p(gold) and disruption are NULL, the NaN attention weights are stored as NaN, the
run says how many rows overflowed, and the views still answer.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from faults_helpers import PAIRS, TINY_HEADS, TINY_LAYERS, cli, fetch

from engine.interventions.measures import entropy, js_divergence, kl_divergence

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

MEASURES = ("kl_first", "kl_answer", "kl_max", "js_first", "entropy_first", "logp_gold", "disruption")


def test_overflowing_corruption_is_recorded_not_crashing(tmp_path):
    db = tmp_path / "w"
    out = cli(
        "run",
        "--problems",
        2,
        "--methods",
        "gauss",
        "--sigmas",
        "1e30",
        "--attention",
        "all",
        "--db",
        db,
        "--json",
    )
    assert out.exit_code == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "complete" and summary["nonfinite_rows"] == 12
    assert "note: 12 condition row(s) had non-finite logits" in out.stderr

    nulls = " AND ".join(f"{m} IS NULL" for m in MEASURES)
    assert fetch(
        db,
        f"SELECT count(*), count(*) FILTER (WHERE {nulls} AND NOT correct) FROM results "
        "WHERE method = 'gauss'",
    ) == [(12, 12)]
    base = fetch(db, "SELECT entropy_first, logp_gold, kl_first FROM results WHERE method = 'baseline'")
    assert len(base) == 2 and all(
        math.isfinite(v) for row in base for v in row
    )  # before: entropy -0.0 for NaN
    # Attention: every weight is kept. The baseline is finite; a corrupted row is the baseline's before its
    # thought (finite) and NaN where the overflow reached (stored as NaN, not dropped or zeroed).
    per_condition = TINY_LAYERS * TINY_HEADS * PAIRS
    [(rows, base_nan, early_nan, late_nan)] = fetch(
        db,
        "SELECT count(*), count(*) FILTER (WHERE condition_id = 0 AND isnan(weight)), "
        "count(*) FILTER (WHERE dst < r.thought AND isnan(weight)), "
        "count(*) FILTER (WHERE dst = 6 AND condition_id > 0 AND isnan(weight)) "
        "FROM attention JOIN results r USING (run_id, problem_id, condition_id)",
    )
    assert (rows, base_nan, early_nan) == (14 * per_condition, 0, 0) and late_nan > 0
    for view in ("token_importance", "method_comparison", "importance_matrix", "layer_correlation", "v_rows"):
        out = cli("query", f"SELECT count(*) FROM {view}", "--format", "csv", "--db", db)
        assert out.exit_code == 0, (view, out.stderr)
    assert fetch(db, "SELECT mean_kl, mean_disruption FROM method_comparison") == [(None, None)]  # not NaN


def test_measures_of_a_nan_distribution_are_nan():
    finite = torch.log_softmax(torch.tensor([[1.0, 2.0, 3.0, float("-inf")]]), -1)  # a masked token is fine
    broken = torch.full((1, 4), float("nan"))
    assert torch.isfinite(entropy(finite)).all()
    for value in (entropy(broken), kl_divergence(finite, broken), js_divergence(finite, broken)):
        assert torch.isnan(value).all()
