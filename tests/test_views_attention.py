"""Attention views (SPEC 7, 11) against answers worked out by hand from tests/views_data.py.

Only the baseline condition counts: run A also stores a uniform decoy attention for condition 1,
which would show up in every number below if a view read it.
"""

from __future__ import annotations

import numpy as np
import pytest
import views_data as vd
from views_data import EOT_BASE, PREV, RUN_A, SELF, SKIP, rows

HEADS = [(0, 0), (0, 1), (1, 0), (1, 1)]
P_MEAN = 0.02 * np.mean([0, 1, 2, 3])  # problem offset of A[Ti -> Ti-1], averaged over P1..P4 (= 0.03)
# importance of T0..T5 for the baseline-correct problems (failures / 2 corruptions; clean excluded)
IMPORTANCE = {"P1": [1.0, 0.5, 0, 0, 0, 0], "P2": [0.5, 0, 0, 0, 0, 0], "P3": [0.5, 0.5, 0.5, 0, 0, 0]}
INDEX = {"P1": 0, "P2": 1, "P3": 2}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("views") / "w")


def eot_attention(layer, problem):
    """Head-mean A[EOT -> T0..T5] of a problem: base + 0.01 p + 0.02 h averaged over h = 0, 1."""
    return np.array(EOT_BASE[layer]) + 0.01 * INDEX[problem] + 0.01


def test_flow_matrix_is_baseline_mean_and_std_over_problems(db):
    got = {
        (r["layer"], r["head"], r["dst"], r["src"]): r
        for r in rows(db, "SELECT * FROM flow_matrix WHERE run_id = ?", [RUN_A])
    }
    assert len(got) == 4 * 42
    prev = got[0, 0, 3, 2]  # A[T3 -> T2] of layer 0 head 0: 0.5 + 0.02 p for p = 0..3
    assert (prev["dst_name"], prev["src_name"], prev["n"]) == ("T3", "T2", 4)
    assert prev["mean_weight"] == pytest.approx(0.5 + P_MEAN, abs=1e-6)
    assert prev["std_weight"] == pytest.approx(0.02 * np.std([0, 1, 2, 3], ddof=1), abs=1e-6)
    assert got[1, 1, 4, 4]["mean_weight"] == pytest.approx(SELF[1, 1], abs=1e-6)
    assert got[1, 1, 4, 4]["std_weight"] == pytest.approx(0, abs=1e-6)
    assert got[0, 1, 5, 0]["mean_weight"] == pytest.approx(SKIP[0, 1], abs=1e-6)
    assert got[0, 0, 2, -1]["mean_weight"] == 0  # BOT gets nothing at baseline (the decoy would give 1/5)
    q = got[1, 0, 6, -2]  # EOT -> question: what is left of the row
    assert q["src_name"] == "Q"
    assert q["mean_weight"] == pytest.approx(1 - sum(EOT_BASE[1]) - 6 * 0.015, abs=1e-6)
    assert rows(db, "SELECT count(*) AS n FROM flow_matrix WHERE run_id <> ?", [RUN_A])[0]["n"] == 0


def test_sequential_flow_is_the_true_previous_thought_not_self_attention(db):
    seq = rows(db, "SELECT * FROM sequential_flow WHERE run_id = ? ORDER BY layer, head, dst", [RUN_A])
    assert len(seq) == 4 * 5
    for r in seq:
        assert r["src"] == r["dst"] - 1 and r["pair"] == f"T{r['dst']}->T{r['dst'] - 1}"
        assert r["mean_weight"] == pytest.approx(PREV[r["layer"], r["head"]] + P_MEAN, abs=1e-6)
    own = rows(db, "SELECT * FROM self_attention WHERE run_id = ?", [RUN_A])
    assert len(own) == 4 * 6
    for r in own:
        assert r["src"] == r["dst"] and r["mean_weight"] == pytest.approx(
            SELF[r["layer"], r["head"]], abs=1e-6
        )
    skip = rows(db, "SELECT * FROM skip_connections WHERE run_id = ?", [RUN_A])
    assert sorted({(r["dst"], r["src"]) for r in skip}) == [(5, 0), (5, 1), (5, 2)]
    for r in skip:
        assert r["mean_weight"] == pytest.approx(
            SKIP[r["layer"], r["head"]] if r["src"] == 0 else 0, abs=1e-6
        )


def test_thought_flow_and_flow_matrix_by_layer_average_the_heads(db):
    """thought_flow: per kind, layer and pair the mean over heads (layer NULL: over layers and heads too);
    flow_matrix_by_layer: flow_matrix averaged over each layer's heads."""
    flow = rows(db, "SELECT * FROM thought_flow WHERE run_id = ?", [RUN_A])
    by_layer = {(r["kind"], r["layer"], r["dst"], r["src"]): r for r in flow if r["layer"] is not None}
    pooled = {(r["kind"], r["dst"], r["src"]): r for r in flow if r["layer"] is None}
    assert (
        len(by_layer) == 2 * (5 + 6 + 3) and len(pooled) == 5 + 6 + 3
    )  # 2 layers x (sequential, self, skip)

    def heads_of(table: dict, layer: int | None = None) -> list[float]:
        return [v for (lay, _), v in table.items() if layer is None or lay == layer]

    for layer in (0, 1):
        prev = by_layer["sequential", layer, 3, 2]
        assert prev["pair"] == "T3->T2" and prev["heads"] == 2
        assert prev["mean_weight"] == pytest.approx(np.mean(heads_of(PREV, layer)) + P_MEAN, abs=1e-6)
        assert (prev["min_head"], prev["max_head"]) == pytest.approx(
            (min(heads_of(PREV, layer)) + P_MEAN, max(heads_of(PREV, layer)) + P_MEAN), abs=1e-6
        )
        assert by_layer["self", layer, 4, 4]["mean_weight"] == pytest.approx(
            np.mean(heads_of(SELF, layer)), abs=1e-6
        )
        assert by_layer["skip", layer, 5, 0]["mean_weight"] == pytest.approx(
            np.mean(heads_of(SKIP, layer)), abs=1e-6
        )
    assert pooled["self", 2, 2]["heads"] == 4
    assert pooled["self", 2, 2]["mean_weight"] == pytest.approx(np.mean(heads_of(SELF)), abs=1e-6)
    assert (pooled["skip", 5, 0]["min_head"], pooled["skip", 5, 0]["max_head"]) == pytest.approx(
        (min(heads_of(SKIP)), max(heads_of(SKIP))), abs=1e-6
    )
    heads = rows(db, "SELECT * FROM flow_matrix WHERE run_id = ?", [RUN_A])
    layers = rows(db, "SELECT * FROM flow_matrix_by_layer WHERE run_id = ?", [RUN_A])
    assert len(layers) == 2 * 42
    for r in layers:
        same = [
            h["mean_weight"]
            for h in heads
            if (h["layer"], h["dst"], h["src"]) == (r["layer"], r["dst"], r["src"])
        ]
        assert r["heads"] == len(same) == 2 and r["mean_weight"] == pytest.approx(np.mean(same), abs=1e-9)
        assert (r["min_head"], r["max_head"]) == pytest.approx((min(same), max(same)), abs=1e-9)
    assert {(r["dst_name"], r["src_name"]) for r in layers} >= {("EOT", "Q"), ("T0", "BOT"), ("T5", "T4")}


def hand_incoming(prev, skip, own):
    """(raw column sums, per-later-thought incoming) of T0..T5 for a head with these mean weights."""
    raw = [own + prev + skip] + [own + prev] * 4 + [own]
    norm = [(prev + skip) / 5, prev / 4, prev / 3, prev / 2, prev / 1, None]
    return raw, norm


def test_hub_scores_normalize_by_later_thoughts(db):
    got = {r["position"]: r for r in rows(db, "SELECT * FROM hub_scores WHERE run_id = ?", [RUN_A])}
    prev = np.mean([PREV[h] for h in HEADS]) + P_MEAN
    skip, own = np.mean([SKIP[h] for h in HEADS]), np.mean([SELF[h] for h in HEADS])
    raw, norm = hand_incoming(prev, skip, own)  # raw 0.78, 0.605 x 4, 0.3; norm 0.096 .. 0.305
    assert [got[j]["later_thoughts"] for j in range(6)] == [5, 4, 3, 2, 1, 0]
    for j in range(6):
        assert got[j]["incoming_raw"] == pytest.approx(raw[j], abs=1e-6)
        assert got[j]["incoming_norm"] == (pytest.approx(norm[j], abs=1e-6) if norm[j] is not None else None)
    # the raw sums call T0 the hub (early positions collect more queries); normalized, T4 is
    assert max(range(6), key=lambda j: got[j]["incoming_raw"]) == 0
    assert max(range(5), key=lambda j: got[j]["incoming_norm"]) == 4
    assert got[0]["hub_ratio"] == pytest.approx(max(norm[:5]) / np.mean(norm[:5]), abs=1e-6)
    assert got[0]["hub_ratio"] == pytest.approx(2.08499, abs=1e-5)
    assert got[0]["hub_ratio_raw"] == pytest.approx(max(raw) / np.mean(raw), abs=1e-6)


def test_hub_scores_by_layer(db):
    got = {
        (r["layer"], r["position"]): r
        for r in rows(db, "SELECT * FROM hub_scores_by_layer WHERE run_id = ?", [RUN_A])
    }
    for layer in (0, 1):
        heads = [(layer, 0), (layer, 1)]
        raw, norm = hand_incoming(
            np.mean([PREV[h] for h in heads]) + P_MEAN,
            np.mean([SKIP[h] for h in heads]),
            np.mean([SELF[h] for h in heads]),
        )
        for j in range(5):
            assert got[layer, j]["incoming_norm"] == pytest.approx(norm[j], abs=1e-6)
            assert got[layer, j]["incoming_raw"] == pytest.approx(raw[j], abs=1e-6)
        assert got[layer, 0]["hub_ratio"] == pytest.approx(max(norm[:5]) / np.mean(norm[:5]), abs=1e-6)


def test_head_metrics_scores_scaling_types_and_rank(db):
    got = {
        (r["layer"], r["head"]): r for r in rows(db, "SELECT * FROM head_metrics WHERE run_id = ?", [RUN_A])
    }
    flow = np.array([PREV[h] + P_MEAN for h in HEADS])  # every A[Ti -> Ti-1] of a head has the same mean
    hub = np.array([np.var(hand_incoming(PREV[h] + P_MEAN, SKIP[h], SELF[h])[1][:5]) for h in HEADS])
    skip = np.array([SKIP[h] / 3 for h in HEADS])  # A[T5 -> T0] = SKIP, A[T5 -> T1], A[T5 -> T2] = 0

    def scaled(x):
        return (x - x.min()) / (x.max() - x.min())

    fs, hs, ss = scaled(flow), scaled(hub), scaled(skip)
    composite = 0.4 * fs + 0.4 * hs + 0.2 * ss
    assert len(set(np.round(flow, 6))) == 4  # the flow score is not a constant (SPEC 11)
    for i, h in enumerate(HEADS):
        row = got[h]
        assert (row["flow"], row["hub"], row["skip"]) == pytest.approx((flow[i], hub[i], skip[i]), abs=1e-6)
        assert row["self_attn"] == pytest.approx(SELF[h], abs=1e-6)
        assert row["composite"] == pytest.approx(composite[i], abs=1e-5)
        assert row["rank"] == 1 + int((composite > composite[i] + 1e-9).sum())
    # head (0,0): strongest flow and hub, no skip; (1,0): strongest skip, weak flow and hub
    assert got[0, 0]["functional_type"] == "Multi-Purpose" and got[0, 0]["rank"] == 1
    assert got[1, 0]["functional_type"] == "Skip"
    assert (
        got[0, 1]["functional_type"] == "Skip"
    )  # flow and hub both the lowest: its skip (0.5) is its top score
    assert [h for h in sorted(got, key=lambda h: got[h]["rank"])] == [(0, 0), (1, 0), (1, 1), (0, 1)]


def test_attention_importance_and_layer_correlation(db):
    attention = {layer: np.concatenate([eot_attention(layer, p) for p in IMPORTANCE]) for layer in (0, 1)}
    importance = np.concatenate([IMPORTANCE[p] for p in IMPORTANCE])
    corr = {r["layer"]: r for r in rows(db, "SELECT * FROM layer_correlation WHERE run_id = ?", [RUN_A])}
    per_thought = {
        (r["layer"], r["thought"]): r
        for r in rows(db, "SELECT * FROM attention_importance WHERE run_id = ?", [RUN_A])
    }
    for layer in (0, 1):
        a, i = attention[layer], importance
        r = np.corrcoef(a, i)[0, 1]
        ac = (a.reshape(3, 6) - a.reshape(3, 6).mean(1, keepdims=True)).ravel()
        ic = (i.reshape(3, 6) - i.reshape(3, 6).mean(1, keepdims=True)).ravel()
        row = corr[layer]
        assert (row["n"], row["problems"], row["patch_layer"]) == (18, 3, 1)  # P4 (baseline wrong) left out
        assert row["r"] == pytest.approx(r, abs=1e-5)
        assert row["t"] == pytest.approx(r * np.sqrt(16 / (1 - r * r)), abs=1e-3)
        assert row["r_within"] == pytest.approx(np.corrcoef(ac, ic)[0, 1], abs=1e-5)
        t0 = np.corrcoef(a.reshape(3, 6)[:, 0], i.reshape(3, 6)[:, 0])[0, 1]
        assert row["r_t0"] == pytest.approx(t0, abs=1e-5)
        assert row["r_t3"] is None  # importance of T3 is 0 for every problem: no correlation, not NaN
        cell = per_thought[layer, 1]
        assert cell["problems"] == 3
        assert cell["mean_attention"] == pytest.approx(a.reshape(3, 6)[:, 1].mean(), abs=1e-6)
        assert cell["mean_importance"] == pytest.approx(1 / 3)
    assert corr[0]["r"] > 0.8 and corr[1]["r"] < -0.6  # early thoughts matter, and layer 0 attends to them


def test_difficulty_strata(db):
    got = {
        (r["stratum"], r["layer"]): r
        for r in rows(db, "SELECT * FROM difficulty_strata WHERE run_id = ?", [RUN_A])
    }
    assert sorted({s for s, _ in got}) == ["3", "5+", "<=2"]  # P1 (2 steps) and P4 (1 step) share <=2
    low = got["<=2", 0]
    assert (low["problems"], low["problems_all"], low["baseline_accuracy"]) == (1, 2, 0.5)
    assert low["mean_importance"] == pytest.approx(1.5 / 6)
    for stratum, problem in (("<=2", "P1"), ("3", "P2"), ("5+", "P3")):
        for layer in (0, 1):
            want = np.corrcoef(eot_attention(layer, problem), IMPORTANCE[problem])[0, 1]
            assert got[stratum, layer]["r"] == pytest.approx(want, abs=1e-5)
            assert got[stratum, layer]["n"] == 6
    no_attention = rows(db, "SELECT * FROM difficulty_strata WHERE run_id = ?", [vd.RUN_B])
    assert {r["stratum"] for r in no_attention} == {"<=2", "4"} and all(
        r["layer"] is None for r in no_attention
    )
