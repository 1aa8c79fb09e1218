"""Views over results (SPEC 7), checked against answers worked out by hand from tests/views_data.py."""

from __future__ import annotations

import math

import pytest
import views_data as vd
from scipy.stats import binomtest
from views_data import PID, RUN_A, RUN_B, RUN_C, rows


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("views") / "w")


def by(rows_, *keys):
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows_}


def wilson(k, n):
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def test_token_importance_is_failure_among_baseline_correct_with_wilson_interval(db):
    got = by(rows(db, "SELECT * FROM token_importance WHERE run_id = ?", [RUN_A]), "thought")
    # P1..P3 are baseline-correct, 2 corruptions each (zero, gauss; the clean control is left out): n = 6.
    # T0 fails for P1 zero, P1 gauss, P2 zero, P3 zero; T1 for P1 and P3 zero; T2 for P3 zero;
    # T3's only failure is P2's clean control, which is not pooled.
    failures = {0: 4, 1: 2, 2: 1, 3: 0, 4: 0, 5: 0}
    assert sorted(got) == list(range(6))
    for k, f in failures.items():
        row = got[k]
        assert (row["n"], row["failures"], row["problems"], row["thought_name"]) == (6, f, 3, f"T{k}")
        assert row["failure_rate"] == pytest.approx(f / 6)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(f, 6), abs=1e-9)
        # every corrupted row of the thought, P4 included (n_all = 4 problems x 2): KL at the answer is
        # k + 1 for zero and 0.5 for gauss; log p drop is 2 and 1 for P1..P3, -2 and -3 for P4.
        assert row["n_all"] == 8
        assert row["mean_kl"] == pytest.approx((k + 1 + 0.5) / 2)
        assert row["mean_kl_first"] == pytest.approx((k + 1 + 0.5) / 20)
        assert row["mean_logp_drop"] == pytest.approx((3 * 2 + 3 * 1 - 2 - 3) / 8)
        assert row["convention"] == "codi" and row["patch_layer"] == 1
    assert (got[0]["ci_low"], got[0]["ci_high"]) == pytest.approx((0.29999, 0.90323), abs=1e-5)
    assert got[3]["ci_low"] == 0.0  # clamped, not -1e-17


def test_method_comparison_pools_thoughts(db):
    got = by(rows(db, "SELECT * FROM method_comparison WHERE run_id = ?", [RUN_A]), "condition")
    assert sorted(got) == ["clean", "gauss_0.5", "zero"]
    zero, gauss, clean = got["zero"], got["gauss_0.5"], got["clean"]
    assert (zero["n"], zero["failures"]) == (18, 6)  # 3 problems x 6 thoughts; P1: 2, P2: 1, P3: 3
    assert (gauss["n"], gauss["failures"], gauss["sigma"]) == (18, 1, 0.5)
    assert (clean["n"], clean["failures"]) == (18, 1)
    assert zero["failure_rate"] == pytest.approx(1 / 3)
    assert (zero["ci_low"], zero["ci_high"]) == pytest.approx(wilson(6, 18), abs=1e-9)
    assert zero["mean_kl"] == pytest.approx(3.5)  # mean of 1..6
    assert (gauss["mean_kl"], clean["mean_kl"]) == pytest.approx((0.5, 0.0))
    assert (zero["mean_disruption"], gauss["mean_disruption"]) == pytest.approx((0.4, 0.2))
    assert zero["mean_logp_drop"] == pytest.approx((18 * 2 - 6 * 2) / 24)  # P4's baseline log p is -5


def test_importance_matrix_cells(db):
    got = by(rows(db, "SELECT * FROM importance_matrix WHERE run_id = ?", [RUN_A]), "thought", "condition")
    assert len(got) == 18
    failures = {(0, "zero"): 3, (0, "gauss_0.5"): 1, (1, "zero"): 2, (2, "zero"): 1, (3, "clean"): 1}
    for key, row in got.items():
        assert row["n"] == 3
        assert row["failures"] == failures.get(key, 0), key
        assert row["failure_rate"] == pytest.approx(failures.get(key, 0) / 3)


def test_method_thought_profile_pools_sigmas_per_method_and_leaves_clean_out(db):
    got = by(rows(db, "SELECT * FROM method_thought_profile WHERE run_id = ?", [RUN_A]), "method", "thought")
    # P1..P3 baseline-correct, one trial each per method and thought. zero fails T0 (P1, P2, P3),
    # T1 (P1, P3), T2 (P3); gauss fails T0 (P1) only; clean (a control: P2's T3 fails) is left out.
    zero, gauss = {0: 3, 1: 2, 2: 1}, {0: 1}
    assert {m for m, _ in got} == {"zero", "gauss"} and len(got) == 12
    for (method, k), row in got.items():
        f = (zero if method == "zero" else gauss).get(k, 0)
        assert (row["n"], row["failures"], row["problems"], row["thought_name"]) == (3, f, 3, f"T{k}")
        assert row["failure_rate"] == pytest.approx(f / 3)
        assert row["sigmas"] == (1 if method == "gauss" else 0) and row["note"] is None
    legacy = rows(db, "SELECT * FROM method_thought_profile WHERE run_id = ?", [RUN_C])
    assert {r["thought_name"] for r in legacy} == {f"token {k}" for k in range(6)}
    assert all(r["note"].startswith("legacy run") for r in legacy)


def test_difficulty_strata_rows_come_in_stratum_order_not_string_order(db):
    got = rows(db, "SELECT stratum, stratum_rank FROM difficulty_strata WHERE run_id = ?", [RUN_B])
    assert [r["stratum"] for r in got] == ["<=2", "4"] and [r["stratum_rank"] for r in got] == [1, 3]
    got = rows(
        db, "SELECT DISTINCT stratum FROM difficulty_strata WHERE run_id = ? ORDER BY stratum_rank", [RUN_A]
    )
    assert [r["stratum"] for r in got] == ["<=2", "3", "5+"]  # string order would put '<=2' last


def test_model_comparison_one_row_per_run(db):
    got = by(rows(db, "SELECT * FROM model_comparison"), "run_id")
    a, b, c = got[RUN_A], got[RUN_B], got[RUN_C]
    assert (a["model_name"], a["problems"], a["baseline_accuracy"]) == ("gpt2-tiny", 4, 0.75)
    assert (a["n"], a["failures"]) == (36, 7)  # clean control excluded, as in token_importance
    assert a["failure_rate_t0"] == pytest.approx(4 / 6) and a["failure_rate_t3"] == 0
    assert (b["status"], b["problems"], b["baseline_accuracy"]) == ("running", 3, pytest.approx(2 / 3))
    assert b["failure_rate_t0"] == pytest.approx(3 / 4)  # P1 zero, P5 zero and gauss of 2 x 2
    assert (c["convention"], c["failure_rate_t2"]) == ("legacy", 1.0)


def test_run_comparison_joins_on_problem_thought_method_sigma(db):
    pairs = rows(db, "SELECT * FROM run_comparison WHERE run_a = ? AND run_b = ?", [RUN_A, RUN_B])
    # shared problems P1, P2; shared conditions: baseline + 6 thoughts x (zero, gauss 0.5); clean only in A
    assert {r["problem_id"] for r in pairs} == {PID["P1"], PID["P2"]}
    assert len(pairs) == 2 * (1 + 12)
    got = by(pairs, "problem_id", "thought", "condition")
    base = got[PID["P2"], None, "baseline"]
    assert (base["correct_a"], base["correct_b"], base["changed"]) == (True, False, True)
    row = got[PID["P1"], 0, "gauss_0.5"]
    assert (row["correct_a"], row["correct_b"], row["failed_a"], row["failed_b"]) == (
        False,
        True,
        True,
        False,
    )
    assert (row["kl_a"], row["kl_b"], row["kl_delta"]) == pytest.approx((0.5, 1.0, 0.5))
    assert (row["patch_layer_a"], row["patch_layer_b"], row["model_a"], row["model_b"]) == (
        1,
        0,
        "gpt2-tiny",
        "other",
    )
    zero = got[PID["P1"], 2, "zero"]
    assert (zero["kl_a"], zero["kl_b"]) == (3.0, 6.0)
    assert sum(r["changed"] for r in pairs) == 1 + 2 + 10  # P2 baseline; P1 T0 gauss, T1 zero; P2 all but 2
    legacy = rows(
        db,
        "SELECT DISTINCT same_convention, convention_b FROM run_comparison WHERE run_a = ? AND run_b = ?",
        [RUN_A, RUN_C],
    )
    assert legacy == [{"same_convention": False, "convention_b": "legacy"}]


def test_baseline_accuracy_with_its_wilson_interval(db):
    got = by(rows(db, "SELECT * FROM baseline_accuracy"), "run_id")
    a, b = got[RUN_A], got[RUN_B]
    assert (a["problems"], a["n"], a["correct"], a["baseline_accuracy"]) == (4, 4, 3, 0.75)  # P4 wrong
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(wilson(3, 4), abs=1e-9)
    assert (b["correct"], b["n"]) == (2, 3) and b["baseline_accuracy"] == pytest.approx(2 / 3)
    assert got[RUN_C]["note"].startswith("legacy run") and a["note"] is None
    model = by(rows(db, "SELECT run_id, baseline_accuracy FROM model_comparison"), "run_id")
    assert {k: v["baseline_accuracy"] for k, v in got.items()} == pytest.approx(
        {k: v["baseline_accuracy"] for k, v in model.items()}
    )


def test_run_comparison_by_thought_and_by_condition(db):
    """Each run's failures among its own baseline-correct shared trials, per layer pairing; B - A."""
    thought = by(
        rows(db, "SELECT * FROM run_comparison_by_thought WHERE run_a = ? AND run_b = ?", [RUN_A, RUN_B]),
        "thought",
    )
    assert sorted(thought) == list(range(6))
    t0 = thought[0]
    # T0, zero + gauss: A fails P1 twice and P2 once of 4 trials; B's baseline-correct shared problem P1
    # fails at zero
    assert (t0["patch_layer_a"], t0["patch_layer_b"], t0["problems"]) == (1, 0, 2)
    assert (t0["n_a"], t0["failures_a"], t0["n_b"], t0["failures_b"]) == (4, 3, 2, 1)
    assert (t0["failure_rate_a"], t0["failure_rate_b"], t0["difference"]) == pytest.approx((0.75, 0.5, -0.25))
    assert (t0["ci_low_b"], t0["ci_high_b"]) == pytest.approx(wilson(1, 2), abs=1e-9)
    assert (t0["mean_kl_a"], t0["mean_kl_b"]) == pytest.approx((0.75, 1.5))
    cells = by(
        rows(db, "SELECT * FROM run_comparison_by_condition WHERE run_a = ? AND run_b = ?", [RUN_A, RUN_B]),
        "thought",
        "condition",
    )
    assert len(cells) == 12  # clean exists only in A: no pair
    gauss = cells[0, "gauss_0.5"]
    assert (gauss["failure_rate_a"], gauss["failure_rate_b"], gauss["difference"]) == (0.5, 0.0, -0.5)
    back = by(
        rows(db, "SELECT * FROM run_comparison_by_thought WHERE run_a = ? AND run_b = ?", [RUN_B, RUN_A]),
        "thought",
    )
    assert (back[0]["n_a"], back[0]["failures_a"], back[0]["difference"]) == (2, 1, pytest.approx(0.25))
    pairs = by(rows(db, "SELECT * FROM run_pairs"), "run_a", "run_b")
    assert len(pairs) == 3 * 2  # every ordered pair of distinct runs
    ab = pairs[RUN_A, RUN_B]
    assert (ab["problems_a"], ab["problems_b"], ab["shared_problems"]) == (4, 3, 2)
    assert (ab["patch_layers_paired"], ab["same_convention"], ab["note"]) == (False, True, None)
    ac = pairs[RUN_A, RUN_C]
    assert not ac["same_convention"] and ac["note"].startswith("different position conventions")


def test_v_rows_is_one_wide_row_per_attention_weight(db):
    n = rows(db, "SELECT count(*) AS n FROM v_rows WHERE run_id = ?", [RUN_A])[0]["n"]
    assert n == 4 * 2 * 2 * 2 * 42  # problems x attended conditions x layers x heads x visible pairs
    got = rows(
        db,
        "SELECT * FROM v_rows WHERE problem_id = ? AND condition_id = 1 AND layer = 0 AND head = 1 "
        "AND dst = 6 AND src = 0",
        [PID["P1"]],
    )
    assert len(got) == 1
    row = got[0]
    assert (row["thought"], row["method"], row["correct"], row["patch_layer"]) == (0, "zero", False, 1)
    assert (row["kl_answer"], row["disruption"]) == pytest.approx((1.0, 0.4))
    assert row["weight"] == pytest.approx(1 / 9)  # the decoy condition attends uniformly
    assert math.isclose(
        rows(
            db,
            "SELECT sum(weight) AS s FROM v_rows WHERE run_id = ? AND condition_id = 0 AND problem_id = ?",
            [RUN_A, PID["P1"]],
        )[0]["s"],
        2 * 2 * 7,
        rel_tol=1e-6,
    )
