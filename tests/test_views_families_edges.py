"""The edges family's views (edge_knockout, edge_knockout_problems) and the families' run comparison
(run_comparison_families) against answers worked out by hand from tests/families_data.py."""

from __future__ import annotations

import families_data as fd
import numpy as np
import pytest
from families_data import EDGE_FAILS, RUN_H, RUN_H2
from views_data import RUN_A, rows


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return fd.build(tmp_path_factory.mktemp("families") / "w")


def test_edge_knockout_rates_and_drops_per_layer_scope_and_key_thought(db):
    got = {
        (r["layer"], r["thought"], r["method"]): r
        for r in rows(db, "SELECT * FROM edge_knockout WHERE run_id = ?", [RUN_H])
    }
    assert set(got) == set(EDGE_FAILS)
    for (layer, key, method), fails in EDGE_FAILS.items():
        row = got[layer, key, method]
        drops = [fd.drop(n, fd.H_BASE_CORRECT[n] and n in fails) for n in fd.H_NAMES]
        assert (row["n"], row["failures"], row["n_all"]) == (4, len(fails), 5)
        assert row["failure_rate"] == pytest.approx(len(fails) / 4)
        assert row["mean_logp_drop"] == pytest.approx(np.mean(drops))
        assert row["layers"] == ("all" if layer is None else f"L{layer}")
        assert row["thought_name"] == f"T{key}"
    hub = got[None, 4, "knockout"]  # all four baseline-correct problems flip; P4 (wrong anyway) drops 1.0
    assert (hub["failures"], hub["mean_logp_drop"]) == (4, pytest.approx((4 * 2.0 + 1.0) / 5))
    assert got[None, 2, "clean"]["failures"] == 0


def test_the_hub_flag_is_hub_scores_most_attended_thought(db):
    hub_scores = {r["position"]: r for r in rows(db, "SELECT * FROM hub_scores WHERE run_id = ?", [RUN_H])}
    norms = {p: hub_scores[p]["incoming_norm"] for p in range(5)}
    expected = max(norms, key=norms.get)
    assert expected == 4  # views_data's attention: T4 gets all of T5's previous-thought attention
    knock = rows(db, "SELECT * FROM edge_knockout WHERE run_id = ?", [RUN_H])
    for r in knock:
        assert r["hub_thought"] == expected
        assert r["is_hub"] is (r["thought"] == expected)
        if r["thought"] < 5:
            assert r["incoming_norm"] == pytest.approx(hub_scores[r["thought"]]["incoming_norm"], abs=1e-12)
        else:
            assert r["incoming_norm"] is None  # T5 has no later thought
    # a run without attention has no hub to name
    assert rows(db, "SELECT DISTINCT hub_thought, is_hub FROM edge_knockout WHERE run_id = ?", [RUN_H2]) == [
        {"hub_thought": None, "is_hub": None}
    ]


def test_edge_knockout_problems_are_the_rows_the_rates_average(db):
    per = rows(db, "SELECT * FROM edge_knockout_problems WHERE run_id = ?", [RUN_H])
    assert len(per) == len(fd.H_NAMES) * len(EDGE_FAILS)
    names = {fd.vd.PID[n]: n for n in fd.H_NAMES}
    for r in per:
        name = names[r["problem_id"]]
        fails = EDGE_FAILS[r["layer"], r["thought"], r["method"]]
        assert r["base_correct"] is fd.H_BASE_CORRECT[name]
        assert r["failed"] is (fd.H_BASE_CORRECT[name] and name in fails)
        assert r["logp_drop"] == pytest.approx(fd.drop(name, r["failed"]))
        assert r["is_hub"] is (r["thought"] == 4)
    view = {
        (r["layers"], r["thought"], r["method"]): r["failure_rate"]
        for r in rows(db, "SELECT * FROM edge_knockout WHERE run_id = ?", [RUN_H])
    }
    for key, rate in view.items():
        mine = [
            r["failed"] for r in per if (r["layers"], r["thought"], r["method"]) == key and r["base_correct"]
        ]
        assert rate == pytest.approx(np.mean(mine))


def test_run_comparison_families_pairs_shared_conditions_on_shared_problems(db):
    got = {
        r["condition"]: r
        for r in rows(
            db, "SELECT * FROM run_comparison_families WHERE run_a = ? AND run_b = ?", [RUN_H, RUN_H2]
        )
    }
    assert sorted(got) == ["L0H0 zero all", "L1H0 zero all", "knockout T4 all layers"]
    # shared problems P1, P2, P3, all baseline-correct in both runs
    a = got["L0H0 zero all"]  # H fails P1, P2, P3; H2 fails P1
    assert (a["problems"], a["n_a"], a["failures_a"], a["n_b"], a["failures_b"]) == (3, 3, 3, 3, 1)
    assert a["difference"] == pytest.approx(1 / 3 - 1)
    assert (a["mean_logp_drop_a"], a["mean_logp_drop_b"]) == pytest.approx((2.0, (2.0 + 0.5 + 0.75) / 3))
    b = got["L1H0 zero all"]  # H fails P1, P2; H2 fails all three
    assert (b["failures_a"], b["failures_b"], b["difference"]) == (2, 3, pytest.approx(1 / 3))
    e = got["knockout T4 all layers"]
    assert (e["family"], e["thought"], e["layer"], e["failures_a"], e["failures_b"]) == (
        "edges",
        4,
        None,
        3,
        1,
    )
    back = rows(db, "SELECT * FROM run_comparison_families WHERE run_a = ? AND run_b = ?", [RUN_H2, RUN_H])
    assert {r["condition"]: r["difference"] for r in back} == pytest.approx(
        {c: -r["difference"] for c, r in got.items()}
    )
    assert rows(db, "SELECT count(*) AS n FROM run_comparison_families WHERE run_a = ?", [RUN_A])[0]["n"] == 0
