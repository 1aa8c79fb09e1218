"""Tests written to kill mutations of the SQL macros and views that survived `python tests/mutate_sql.py`
(docs/MUTATION.md): values checked against independent computations (scipy, by hand).

No torch here (and no conftest fixture): tests/mutate_sql.py runs this file first with --noconftest, so a
mutation costs a 3 s start, not 8 s.
"""

from __future__ import annotations

import duckdb
import pytest
import views_data as vd
from scipy.stats import binomtest, pearsonr
from scipy.stats import t as student_t

import warehouse.store as wh
from warehouse.views import MACROS, QUERIES_DIR


# --- queries/macros/macros.sql -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def macros():
    con = duckdb.connect()
    con.execute((QUERIES_DIR / MACROS).read_text())
    return con


def test_sql_wilson_matches_scipy(macros):
    for n in range(1, 16):
        for k in range(n + 1):
            ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
            got = macros.execute("SELECT wilson_low(?, ?), wilson_high(?, ?)", [k, n, k, n]).fetchone()
            assert got == pytest.approx((ci.low, ci.high), abs=1e-9), (k, n)
    assert macros.execute("SELECT wilson_low(0, 0), wilson_high(0, 0)").fetchone() == (None, None)


def test_sql_wilson_ends_exactly_at_0_and_1(macros):
    """0 of n: the interval starts at exactly 0; n of n: it ends at exactly 1 (floating point left alone,
    the formula gives 1 - 1e-16 at n = 11)."""
    for n in range(1, 61):
        assert macros.execute("SELECT wilson_low(0, ?), wilson_high(?, ?)", [n, n, n]).fetchone() == (
            0.0,
            1.0,
        ), n


def test_sql_r_to_t_matches_scipy_and_is_null_where_undefined(macros):
    for x, y in (([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]), ([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.5])):
        r, p = pearsonr(x, y)
        t = macros.execute("SELECT r_to_t(?, ?)", [float(r), len(x)]).fetchone()[0]
        assert 2 * student_t.sf(abs(t), len(x) - 2) == pytest.approx(p, rel=1e-9)  # n = 3 is defined (df 1)
    for r, n in ((1.0, 10), (-1.0, 10), (0.5, 2)):
        assert macros.execute("SELECT r_to_t(?, ?)", [r, n]).fetchone()[0] is None, (r, n)


def test_sql_stratum(macros):
    want = {0: "<=2", 1: "<=2", 2: "<=2", 3: "3", 4: "4", 5: "5+", 6: "5+", 12: "5+", None: None}  # SPEC 7
    for n, stratum in want.items():
        assert macros.execute("SELECT stratum(?)", [n]).fetchone()[0] == stratum, n


def test_sql_finite(macros):
    got = macros.execute(
        "SELECT finite(1.5), finite('nan'::DOUBLE), finite('inf'::DOUBLE), finite(NULL)"
    ).fetchone()
    assert got == (1.5, None, None, None)


def test_sql_legacy_notes_and_names(macros):
    """Codi runs: no note, our names; a legacy run: 'token k' and a note; a pair: which runs are legacy."""
    one = macros.execute(
        "SELECT legacy_note('codi'), legacy_note('legacy'), not_meaningful('why')"
    ).fetchone()
    assert (
        one[0] is None
        and one[1].startswith("legacy run: ")
        and one[2] == "not meaningful for legacy runs: why"
    )
    labels = macros.execute(
        "SELECT position_label('codi', 3, 'T3'), position_label('legacy', 3, 'T3'), "
        "position_label('legacy', NULL, NULL)"
    ).fetchone()
    assert labels == ("T3", "token 3", None)
    pairs = [
        macros.execute("SELECT pair_note(?, ?)", list(p)).fetchone()[0]
        for p in (("codi", "codi"), ("legacy", "legacy"), ("codi", "legacy"), ("legacy", "codi"))
    ]
    assert pairs[0] is None and pairs[1].startswith("both legacy runs: ")
    assert pairs[2].startswith("different position conventions: ") and pairs[3] == pairs[2]


# --- queries/intermediate/20_int_outcomes.sql and the views over it: rows the hand-made warehouse lacks ----
EDGE_ROWS = [  # (problem, condition_id, thought, method, sigma, correct, flipped, entropy_answer)
    ("Q1", 0, None, "baseline", None, True, False, 1.0),  # baseline right
    ("Q1", 1, 0, "zero", None, False, True, 2.5),
    ("Q1", 2, 0, "gauss", 0.5, True, False, 1.5),
    ("Q1", 3, 1, "zero", None, False, None, 3.0),  # flipped not stored: failed from the baseline
    ("Q2", 0, None, "baseline", None, False, False, 0.5),  # baseline wrong
    ("Q2", 1, 0, "zero", None, False, False, 0.9),
    ("Q2", 3, 1, "zero", None, False, None, 0.7),  # wrong, like its baseline: not a failure
    ("Q3", 1, 0, "zero", None, False, True, 2.0),  # no baseline row at all
]


@pytest.fixture(scope="module")
def edge_db(tmp_path_factory):
    store = wh.open_warehouse(tmp_path_factory.mktemp("edge") / "w", durable=False)
    run = store.begin_run(
        {"hand": "edge"}, run_id="edge", model_name="hand", n_layers=2, n_heads=2, patch_layers=[1]
    )
    problems = [
        {
            "problem_id": q,
            "question": f"question {q}",
            "gold_answer": 1.0,
            "n_steps": 3,
            "source": "hand",
            "source_id": q,
        }
        for q in ("Q1", "Q2", "Q3")
    ]
    results = [
        {
            "problem_id": q,
            "condition_id": c,
            "layer": None if k is None else 1,
            "thought": k,
            "method": m,
            "sigma": s,
            "correct": ok,
            "flipped": flip,
            "fixed": False,
            "kl_first": 0.0,
            "kl_answer": 0.0,
            "logp_gold": -1.0,
            "disruption": 0.0,
            "entropy_answer": e,
        }
        for q, c, k, m, s, ok, flip, e in EDGE_ROWS
    ]
    store.append_problems(run, problems, results)
    store.finish_run(run)
    path = str(store.path)
    store.close()
    return path


def _edge(db, sql):
    return vd.rows(db, sql, ["edge"])


def test_sql_failed_needs_a_right_baseline_and_keeps_rows_without_one(edge_db):
    got = {
        (r["problem_id"], r["condition_id"]): r
        for r in _edge(edge_db, "SELECT * FROM int_outcomes WHERE run_id = ?")
    }
    assert len(got) == len(EDGE_ROWS)  # Q3's row stays, with base_correct NULL
    want = {
        ("Q1", 0): False,
        ("Q1", 1): True,
        ("Q1", 2): False,
        ("Q1", 3): True,
        ("Q2", 0): False,
        ("Q2", 1): False,
        ("Q2", 3): False,
        ("Q3", 1): True,
    }
    assert {key: r["failed"] for key, r in got.items()} == want
    assert [got[q, 1]["base_correct"] for q in ("Q1", "Q2", "Q3")] == [True, False, None]


def test_sql_failures_are_counted_among_baseline_right_trials_only(edge_db):
    """Q3's stored flip has no baseline to stand on: it is in neither n nor failures (failures <= n)."""
    tokens = {r["thought"]: r for r in _edge(edge_db, "SELECT * FROM token_importance WHERE run_id = ?")}
    assert [(tokens[k]["n"], tokens[k]["failures"], tokens[k]["n_all"]) for k in (0, 1)] == [
        (2, 1, 4),
        (1, 1, 2),
    ]
    methods = {r["condition"]: r for r in _edge(edge_db, "SELECT * FROM method_comparison WHERE run_id = ?")}
    assert [(methods[c]["n"], methods[c]["failures"]) for c in ("zero", "gauss_0.5")] == [(2, 2), (1, 0)]
    # entropy change at the answer number: the row's entropy minus its baseline's (Q3 has none: NULL)
    assert methods["zero"]["mean_entropy_change"] == pytest.approx(
        ((2.5 - 1) + (3 - 1) + (0.9 - 0.5) + (0.7 - 0.5)) / 4
    )
    assert methods["gauss_0.5"]["mean_entropy_change"] == pytest.approx(0.5)
