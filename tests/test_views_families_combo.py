"""Views of the pairs / triplets and components families (interactions, component_importance,
component_comparison, the run comparisons) against numbers worked out by hand from
tests/views_combo_data.py; and stg_results keeping the classic views classic when a run holds other
families.

No torch here (and no conftest fixture), like tests/test_mutation_kills_sql.py.
"""

from __future__ import annotations

from fractions import Fraction as F

import pytest
import views_combo_data as vd
from scipy.stats import binomtest
from views_combo_data import RUN_X, RUN_Y, RUN_Z, rows


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("combo") / "w")


def by(rows_, *keys):
    return {tuple(r[k] for k in keys): r for r in rows_}


def wilson(k, n):
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def hand(joint, singles):
    """(expected, synergy, redundancy) from exact fractions: 1 - prod(1 - p_i), joint - expected."""
    keep = F(1)
    for p in singles:
        keep *= 1 - p
    expected = 1 - keep
    return expected, joint - expected, max(expected - joint, F(0))


# Over the baseline-correct problems Q1..Q5 (Q6 is baseline-wrong): zero singles fail T0 2/5, T1 2/5,
# T2 1/5; the mean pair counts Q1..Q4 only (Q5 lacks its T1 mean row): T0 mean 1/4, T1 mean 0/4.
WANT = {
    ("zero", (0, 1)): (5, F(5, 5), [F(2, 5), F(2, 5)]),
    ("zero", (0, 2)): (5, F(1, 5), [F(2, 5), F(1, 5)]),
    ("zero", (1, 2)): (5, F(3, 5), [F(2, 5), F(1, 5)]),
    ("mean", (0, 1)): (4, F(1, 4), [F(1, 4), F(0)]),
    ("zero", (0, 1, 2)): (5, F(4, 5), [F(2, 5), F(2, 5), F(1, 5)]),
}


def test_interactions_expected_synergy_redundancy_by_hand(db):
    got = {
        (r["method"], tuple(r["combination"])): r
        for r in rows(db, "SELECT * FROM interactions WHERE run_id = ?", [RUN_X])
    }
    assert sorted(got) == sorted(WANT)
    for key, (n, joint, singles) in WANT.items():
        row = got[key]
        expected, synergy, redundancy = hand(joint, singles)
        assert row["n"] == n, key
        assert row["size"] == len(key[1]) and row["family"] == ("pairs" if len(key[1]) == 2 else "triplets")
        assert row["joint_rate"] == pytest.approx(float(joint), abs=1e-12)
        rates = [row["rate_a"], row["rate_b"], row["rate_c"]][: len(singles)]
        assert rates == pytest.approx([float(p) for p in singles], abs=1e-12)
        assert row["expected"] == pytest.approx(float(expected), abs=1e-12), key
        assert row["synergy"] == pytest.approx(float(synergy), abs=1e-12), key
        assert row["redundancy"] == pytest.approx(float(redundancy), abs=1e-12), key
        assert (row["joint_low"], row["joint_high"]) == pytest.approx(wilson(int(joint * n), n), abs=1e-9)
    # the numbers themselves, so a wrong formula shared by hand() and the view cannot pass
    assert got["zero", (0, 1)]["expected"] == pytest.approx(0.64) and got["zero", (0, 1)]["synergy"] == (
        pytest.approx(0.36)
    )
    assert got["zero", (0, 2)]["redundancy"] == pytest.approx(0.32)
    assert got["zero", (0, 2)]["synergy"] == pytest.approx(-0.32)
    assert got["zero", (0, 1, 2)]["expected"] == pytest.approx(0.712)
    assert got["zero", (0, 1)]["rate_c"] is None and got["zero", (0, 1)]["failures_c"] is None
    assert got["zero", (0, 1)]["combination_name"] == "T0+T1"
    assert got["zero", (0, 1, 2)]["combination_name"] == "T0+T1+T2"


def test_interactions_count_the_same_problems_for_joint_and_singles(db):
    got = {
        (r["method"], tuple(r["combination"])): r
        for r in rows(db, "SELECT * FROM interactions WHERE run_id = ?", [RUN_X])
    }
    mean = got["mean", (0, 1)]
    # Q5 fails the mean pair but has no T1 mean row: left out of every rate, counted as incomplete
    assert (mean["n"], mean["incomplete"], mean["failures"], mean["failures_a"]) == (4, 1, 1, 1)
    zero = got["zero", (0, 1)]
    assert (zero["n"], zero["incomplete"], zero["n_all"]) == (5, 0, 6)


def test_interactions_log_p_drops(db):
    got = {
        (r["method"], tuple(r["combination"])): r
        for r in rows(db, "SELECT * FROM interactions WHERE run_id = ?", [RUN_X])
    }
    # every complete problem, Q6 included (baseline log p -5): pair zero log p -6, so drops 5 x 5 and 1
    row = got["zero", (0, 1)]
    assert row["mean_logp_drop"] == pytest.approx((5 * 5 + 1) / 6)
    # T0 zero alone: log p -2 (drop 1; Q6: -3), T1 zero: -3 (drop 2; Q6: -2)
    assert row["mean_logp_drop_a"] == pytest.approx((5 * 1 - 3) / 6)
    assert row["mean_logp_drop_b"] == pytest.approx((5 * 2 - 2) / 6)
    assert row["logp_drop_additive"] == pytest.approx((5 - 3 + 10 - 2) / 6)
    trip = got["zero", (0, 1, 2)]
    assert trip["mean_logp_drop"] == pytest.approx((5 * 7 + 3) / 6)
    assert trip["mean_logp_drop_c"] == pytest.approx((5 * 3 - 1) / 6)


def test_interaction_problems_rows(db):
    got = rows(
        db,
        "SELECT * FROM int_interaction_problems WHERE run_id = ? AND method = 'zero' "
        "AND combination = [0, 1] ORDER BY problem_id",
        [RUN_X],
    )
    assert [r["problem_id"][:2] for r in got] == ["q1", "q2", "q3", "q4", "q5", "q6"]
    flags = [(r["failed"], r["failed_a"], r["failed_b"], r["failed_c"]) for r in got]
    assert flags == [
        (True, True, False, None),
        (True, True, True, None),
        (True, False, True, None),
        (True, False, False, None),
        (True, False, False, None),
        (False, False, False, None),
    ]
    assert [r["base_correct"] for r in got] == [True] * 5 + [False]
    assert all(r["complete"] for r in got)


def test_component_importance_sites_and_block_reference(db):
    got = by(rows(db, "SELECT * FROM component_importance WHERE run_id = ?", [RUN_X]), "thought", "site")
    # block rows only where the run has component rows (T0, T1 zero), not T2, T3 or mean
    assert sorted(got) == [(0, "attn"), (0, "block"), (0, "mlp"), (1, "attn"), (1, "block"), (1, "mlp")]
    failures = {
        (0, "attn"): 3,
        (0, "mlp"): 1,
        (0, "block"): 2,
        (1, "attn"): 0,
        (1, "mlp"): 2,
        (1, "block"): 2,
    }
    for key, f in failures.items():
        row = got[key]
        assert (row["n"], row["failures"], row["n_all"], row["method"]) == (5, f, 6, "zero"), key
        assert row["failure_rate"] == pytest.approx(f / 5)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(f, 5), abs=1e-9)
    # attn log p -2.5 (drop 1.5; Q6 -2.5 -> -5 - -2.5 = -2.5), mlp -1.5 (drop 0.5; Q6 -3.5)
    assert got[0, "attn"]["mean_logp_drop"] == pytest.approx((5 * 1.5 - 2.5) / 6)
    assert got[0, "mlp"]["mean_logp_drop"] == pytest.approx((5 * 0.5 - 3.5) / 6)
    assert (got[0, "attn"]["mean_kl"], got[0, "mlp"]["mean_kl"], got[1, "block"]["mean_kl"]) == (
        2.0,
        1.0,
        2.0,
    )


def test_component_comparison_paired_table(db):
    got = by(rows(db, "SELECT * FROM component_comparison WHERE run_id = ?", [RUN_X]), "thought")
    t0, t1 = got[(0,)], got[(1,)]
    # T0: attn fails Q1, Q2, Q3; mlp fails Q3 -> both 1, attn only 2, mlp only 0, neither 2
    assert (t0["n"], t0["both"], t0["attn_only"], t0["mlp_only"], t0["neither"]) == (5, 1, 2, 0, 2)
    assert (t0["failure_rate_attn"], t0["failure_rate_mlp"], t0["difference"]) == pytest.approx(
        (0.6, 0.2, 0.4)
    )
    assert (t0["n_block"], t0["failures_block"], t0["failure_rate_block"]) == (5, 2, pytest.approx(0.4))
    assert (t1["both"], t1["attn_only"], t1["mlp_only"], t1["neither"]) == (0, 0, 2, 3)
    assert t1["difference"] == pytest.approx(-0.4)


def test_stg_results_keeps_only_baseline_and_classic_rows(db):
    counts = by(rows(db, "SELECT run_id, count(*) AS n FROM stg_results GROUP BY run_id"), "run_id")
    # run X: 6 baselines + 4 zero x 6 problems + T0 mean x 5 + T1 mean x 4 = 39; run Z: 2 x 7
    assert counts[(RUN_X,)]["n"] == 39 and counts[(RUN_Z,)]["n"] == 14
    families = rows(
        db,
        "SELECT family, count(*) AS n FROM stg_interventions WHERE run_id = ? GROUP BY 1 ORDER BY 1",
        [RUN_X],
    )
    assert families == [
        {"family": "baseline", "n": 6},
        {"family": "components", "n": 24},
        {"family": "pairs", "n": 24},
        {"family": "thoughts", "n": 33},
        {"family": "triplets", "n": 6},
    ]


def test_rows_without_a_family_read_as_baseline_and_thoughts(db):
    got = rows(
        db,
        "SELECT method, family, site, thought, thoughts FROM stg_interventions WHERE run_id = ? "
        "AND problem_id LIKE 'q1%' ORDER BY condition_id",
        [RUN_Z],
    )
    assert got[0] == {
        "method": "baseline",
        "family": "baseline",
        "site": None,
        "thought": None,
        "thoughts": None,
    }
    assert got[1] == {"method": "zero", "family": "thoughts", "site": "block", "thought": 0, "thoughts": [0]}
    assert rows(db, "SELECT count(*) AS n FROM interactions WHERE run_id = ?", [RUN_Z]) == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM component_importance WHERE run_id = ?", [RUN_Z]) == [{"n": 0}]


def test_classic_views_ignore_the_other_families(db):
    got = by(rows(db, "SELECT * FROM token_importance WHERE run_id = ?", [RUN_X]), "thought")
    # only the single-thought rows: T0 zero fails Q1, Q2 and mean fails Q1 (5 + 5 trials: Q6 lacks its
    # mean row, Q5 has it); T1 zero fails Q2, Q3 (5 zero + 4 mean trials). Pairs and components would
    # add trials (and a NULL thought) if they leaked in.
    assert sorted(got) == [(0,), (1,), (2,), (3,)]
    assert (got[(0,)]["n"], got[(0,)]["failures"]) == (10, 3)
    assert (got[(1,)]["n"], got[(1,)]["failures"]) == (9, 2)
    assert (got[(2,)]["n"], got[(2,)]["failures"]) == (5, 1)
    methods = by(rows(db, "SELECT * FROM method_comparison WHERE run_id = ?", [RUN_X]), "condition")
    assert (methods[("zero",)]["n"], methods[("zero",)]["failures"]) == (20, 5)
    model = rows(db, "SELECT n, failures FROM model_comparison WHERE run_id = ?", [RUN_X])
    assert model == [{"n": 29, "failures": 6}]
    pairs = rows(db, "SELECT count(*) AS n FROM run_comparison WHERE run_a = ? AND run_b = ?", [RUN_X, RUN_Y])
    assert pairs == [{"n": 39}]


def test_run_comparison_by_combination(db):
    got = {
        (r["method"], tuple(r["combination"])): r
        for r in rows(
            db, "SELECT * FROM run_comparison_by_combination WHERE run_a = ? AND run_b = ?", [RUN_X, RUN_Y]
        )
    }
    assert sorted(got) == sorted(WANT)
    row = got["zero", (0, 1)]
    # run Y's [0, 1] zero fails Q1, Q2 only: 0.4 - 0.64 = -0.24 against run X's +0.36
    assert (row["problems"], row["n_a"], row["n_b"]) == (6, 5, 5)
    assert (row["synergy_a"], row["synergy_b"]) == pytest.approx((0.36, -0.24))
    assert row["synergy_difference"] == pytest.approx(-0.6)
    assert got["zero", (0, 1, 2)]["expected_a"] == pytest.approx(0.712)
    assert got["zero", (0, 1, 2)]["synergy_difference"] == pytest.approx(0.0)
    assert got["mean", (0, 1)]["n_a"] == 4  # Q5 lacks a single row in both runs
    none = rows(db, "SELECT count(*) AS n FROM run_comparison_by_combination WHERE run_a = ?", [RUN_Z])
    assert none == [{"n": 0}]


def test_run_comparison_by_component(db):
    got = by(
        rows(db, "SELECT * FROM run_comparison_by_component WHERE run_a = ? AND run_b = ?", [RUN_X, RUN_Y]),
        "thought",
        "site",
    )
    assert sorted(got) == [(0, "attn"), (0, "mlp"), (1, "attn"), (1, "mlp")]
    row = got[0, "mlp"]  # run X fails Q3, run Y Q1, Q2, Q3
    assert (row["n_a"], row["failures_a"], row["n_b"], row["failures_b"]) == (5, 1, 5, 3)
    assert row["difference"] == pytest.approx(0.4)
    assert (row["ci_low_b"], row["ci_high_b"]) == pytest.approx(wilson(3, 5), abs=1e-9)
    assert got[0, "attn"]["difference"] == 0
