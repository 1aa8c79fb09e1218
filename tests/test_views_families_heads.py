"""The heads family's views (head_effects, head_topk_effects) against answers worked out by hand from
tests/families_data.py: failure rates among baseline-correct problems, log p(gold) drops, and the join
with head_metrics' descriptive composite and rank."""

from __future__ import annotations

import json

import families_data as fd
import numpy as np
import pytest
from families_data import HEAD_FAILS, RUN_H, RUN_H2
from scipy.stats import binomtest
from views_data import RUN_A, rows

CORRECT = [n for n in fd.H_NAMES if fd.H_BASE_CORRECT[n]]  # P1, P2, P3, P5 (P4's baseline is wrong)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return fd.build(tmp_path_factory.mktemp("families") / "w")


def hand_drop(fails: set[str]) -> float:
    """Mean log p(gold) drop over every problem with a baseline (P4 included, never failing)."""
    return float(np.mean([fd.drop(n, fd.H_BASE_CORRECT[n] and n in fails) for n in fd.H_NAMES]))


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def test_head_effects_are_failure_rates_among_baseline_correct_problems(db):
    got = {
        (r["layer"], r["head"], r["method"], r["steps"]): r
        for r in rows(db, "SELECT * FROM head_effects WHERE run_id = ?", [RUN_H])
    }
    singles = {k: v for k, v in HEAD_FAILS.items() if k[1] is not None}
    assert len(got) == len(singles) == 10
    for (layer, head, method, steps), fails in singles.items():
        label = "all" if steps == fd.ALL else f"T{steps[0]}"
        row = got[layer, head, method, label]
        k = len(fails)
        assert (row["n"], row["failures"], row["n_all"]) == (4, k, 5), (layer, head, method, label)
        assert row["failure_rate"] == pytest.approx(k / 4)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(k, 4), abs=1e-9)
        assert row["mean_logp_drop"] == pytest.approx(hand_drop(fails))
        assert row["head_label"] == f"L{layer}H{head}"
        assert row["thought"] == (None if label == "all" else steps[0])
    # worked by hand: L0H0 zeroed at all six steps fails P1, P2, P3 of the four; drops 2, 2, 2, then P4 (1.0)
    # and P5 (1.25) keep their answers
    l0h0 = got[0, 0, "zero", "all"]
    assert (l0h0["failures"], l0h0["failure_rate"], l0h0["mean_logp_drop"]) == (3, 0.75, pytest.approx(1.65))
    assert got[1, 0, "zero", "T2"]["failures"] == 1  # one step only: P3
    assert got[0, 0, "clean", "all"]["failures"] == 0  # the control changes nothing
    assert (
        rows(db, "SELECT count(*) AS n FROM head_effects WHERE run_id IN (?, ?)", [RUN_A, "run-b"])[0]["n"]
        == 0
    )


def test_head_effects_carry_the_heads_descriptive_composite_and_rank(db):
    metrics = {
        (r["layer"], r["head"]): r for r in rows(db, "SELECT * FROM head_metrics WHERE run_id = ?", [RUN_H])
    }
    assert len(metrics) == 4
    effects = rows(db, "SELECT * FROM head_effects WHERE run_id = ?", [RUN_H])
    for r in effects:
        m = metrics[r["layer"], r["head"]]
        assert r["composite"] == pytest.approx(m["composite"], abs=1e-12)
        assert r["composite_rank"] == m["rank"]
        assert r["functional_type"] == m["functional_type"]
        assert (r["flow"], r["hub"], r["skip"]) == pytest.approx((m["flow"], m["hub"], m["skip"]), abs=1e-12)
    ranks = {key: m["rank"] for key, m in metrics.items()}
    assert sorted(ranks.values()) == [1, 2, 3, 4] and ranks[0, 0] == 1  # L0H0 leads (views_data's PREV)
    # run H2 has no attention: its heads have effects but no composite
    other = rows(db, "SELECT * FROM head_effects WHERE run_id = ?", [RUN_H2])
    assert len(other) == 2 and all(r["composite"] is None and r["composite_rank"] is None for r in other)


def test_head_metrics_reads_the_intermediate_unchanged(db):
    """head_metrics became a SELECT over int_head_metrics (so head_effects can join it): the same rows."""
    view = rows(
        db, "SELECT * EXCLUDE (convention, note) FROM head_metrics WHERE run_id = ? ORDER BY ALL", [RUN_A]
    )
    inner = rows(db, "SELECT * FROM int_head_metrics WHERE run_id = ? ORDER BY ALL", [RUN_A])
    # DuckDB's parallel aggregation may sum in another order in each query: the last bit can differ
    assert len(view) == len(inner) == 4
    for got, want in zip(view, inner, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
            else:
                assert got[key] == value, key


def test_the_top_k_heads_ablated_together(db):
    (row,) = rows(db, "SELECT * FROM head_topk_effects WHERE run_id = ?", [RUN_H])
    fails = HEAD_FAILS[None, None, "zero", fd.ALL]
    assert (row["k"], row["heads"], row["method"], row["steps"]) == (2, "L0H0,L1H0", "zero", "all")
    assert (row["n"], row["failures"], row["n_all"]) == (4, 4, 5)
    assert row["failure_rate"] == 1.0 and row["mean_logp_drop"] == pytest.approx(hand_drop(fails))
    assert row["mean_logp_drop"] == pytest.approx((4 * fd.DROP_FAIL + 1.0) / 5)
    metrics = {
        (r["layer"], r["head"]): r for r in rows(db, "SELECT * FROM head_metrics WHERE run_id = ?", [RUN_H])
    }
    assert row["mean_composite"] == pytest.approx(np.mean([metrics[h]["composite"] for h in fd.TOPK]))
    assert row["worst_rank"] == max(metrics[h]["rank"] for h in fd.TOPK)
    top2 = {key for key, m in metrics.items() if m["rank"] <= 2}
    assert row["top_ranked"] is (top2 == set(fd.TOPK))
    # the set's rows are not single heads: head_effects leaves them out
    labels = {r["head_label"] for r in rows(db, "SELECT * FROM head_effects WHERE run_id = ?", [RUN_H])}
    assert None not in labels


def test_family_rows_coalesce_the_family_of_rows_stored_before_schema_6(db):
    """stg_interventions: family NULL reads as 'baseline' for the baseline and 'thoughts' otherwise."""
    got = rows(
        db,
        "SELECT family, count(*) AS n FROM stg_interventions WHERE run_id = ? GROUP BY ALL ORDER BY family",
        [RUN_A],
    )
    assert got == [{"family": "baseline", "n": 4}, {"family": "thoughts", "n": 4 * 18}]
    steps = rows(
        db,
        "SELECT DISTINCT steps, part_heads, k FROM int_family_outcomes WHERE run_id = ? AND family = 'heads' "
        "ORDER BY ALL",
        [RUN_H],
    )
    assert {(r["steps"], r["k"]) for r in steps} == {("all", 1), ("T2", 1), ("all", 2)}
    parts = rows(
        db,
        "SELECT parts FROM stg_interventions WHERE run_id = ? AND head IS NULL AND family = 'heads'",
        [RUN_H],
    )
    assert [(p["layer"], p["head"]) for p in json.loads(parts[0]["parts"])] == fd.TOPK
