"""The readout views (thought_decoding, question_token_routing, thought_operand_reading, probe_summary,
probe_best and their per-problem views) against answers worked out by hand from tests/readouts_data.py,
and against a plain-Python recomputation of every cell. Wilson bounds and Holm's adjustment come from
statsmodels. No torch here (tests/mutate_sql.py runs this file without the conftest)."""

from __future__ import annotations

import math
import re

import pytest
import readouts_data as rd
from readouts_data import NAMES, PID, RUN_F, RUN_R
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint
from views_data import rows

NAME = {pid: n for n, pid in PID.items()}
KS = (1, 3)  # top-1 and the stored top-k (ranks 1..3)
POSITION_NAMES = {0: "T0", 1: "T1", 6: "EOT"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return rd.build(tmp_path_factory.mktemp("readouts") / "w")


def wilson(k: int, n: int) -> tuple[float, float]:
    return proportion_confint(k, n, alpha=0.05, method="wilson")


# --- thought_decoding --------------------------------------------------------------------------------
def decoding(db, **where) -> dict[tuple, dict]:
    got = rows(db, "SELECT * FROM thought_decoding WHERE run_id = ?", [RUN_R])
    return {
        (r["layer"], r["position"], r["target"], r["match"], r["k"]): r
        for r in got
        if all(r[c] == v for c, v in where.items())
    }


def test_thought_decoding_t0_at_layer_1_by_hand(db):
    """Layer 1, T0 (rank 1 / 2 / 3): R1 ' 24' ' the' ' 2'; R2 '1' ' 12' ' 6'; R3 ' apples' ' 60' '.';
    R4 ' 7' '.' '5'. Step 1's values: R1 24, R2 12, R3 6 (R4 has no step). The control of each problem is
    the next one by ordinal with the target: R1 -> R2 (12), R2 -> R3 (6), R3 -> R1 (24)."""
    got = decoding(db, layer=1, position=0)
    want = {  # (target, match, k): n, hits, control_hits (control_n = n here)
        # exact: R1's ' 24' at rank 1; R2's ' 12' at rank 2. Control: R2's ' 6' (rank 3) is R3's value 6
        ("step", "exact", 1): (3, 1, 0),
        ("step", "exact", 3): (3, 2, 1),
        # leading: R1 '24' and R2 '1' (of 12) at rank 1; R3's '60' is not a prefix of '6'
        ("step", "leading", 1): (3, 2, 0),
        ("step", "leading", 3): (3, 2, 1),
        # any step: R3's ' 60' (its step 2) at rank 2 counts too
        ("any_step", "exact", 1): (3, 1, 0),
        ("any_step", "exact", 3): (3, 3, 1),
        ("any_step", "leading", 3): (3, 3, 1),
        # final: four problems (R4's 7.5 is read by no token: ' 7' and '5' are not 7.5)
        ("final", "exact", 1): (4, 0, 0),
        ("final", "exact", 3): (4, 2, 0),
        # final leading: R4 (7.5, not an integer) has no row; R1's '2' (rank 3) leads 29, R2's '1' leads 12
        ("final", "leading", 1): (3, 1, 0),
        ("final", "leading", 3): (3, 3, 1),
    }
    for (target, match, k), (n, hits, control_hits) in want.items():
        r = got[1, 0, target, match, k]
        assert (r["n"], r["hits"], r["control_n"], r["control_hits"]) == (n, hits, n, control_hits), r
        assert r["rate"] == pytest.approx(hits / n)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson(hits, n), abs=1e-9)
        assert r["control_rate"] == pytest.approx(control_hits / n)
        assert r["lift"] == pytest.approx((hits - control_hits) / n)
        assert r["position_name"] == "T0"


def test_a_step_target_counts_only_problems_with_that_step(db):
    """T1 reads step 2: R1 (29) and R3 (60) only; R2's ' 12' at rank 1 is its final and its step 1, not a
    step-2 hit, and R2 (one step) is not counted. EOT (no step 7) has no 'step' row at all."""
    got = decoding(db, layer=1, position=1)
    exact1 = got[1, 1, "step", "exact", 1]
    assert (exact1["n"], exact1["hits"], exact1["control_hits"]) == (2, 1, 0)  # R1 ' 29'; R3 ' 6' is not 60
    leading1 = got[1, 1, "step", "leading", 1]
    assert (leading1["n"], leading1["hits"]) == (2, 2)  # R3's '6' leads 60
    assert got[1, 1, "any_step", "exact", 1]["n"] == 3 and got[1, 1, "any_step", "exact", 1]["hits"] == 3
    assert not [key for key in decoding(db) if key[1] == 6 and key[2] == "step"]
    eot = decoding(db, layer=1, position=6)
    # R4's ' 7.5' (rank 3) is its final exactly; ' 7' and '.5' are not
    assert (eot[1, 6, "final", "exact", 1]["hits"], eot[1, 6, "final", "exact", 3]["hits"]) == (1, 3)


def test_the_control_is_the_next_problem_with_the_target(db):
    got = rows(
        db,
        "SELECT DISTINCT problem_id, position, target, match, control_problem_id "
        "FROM thought_decoding_problems WHERE run_id = ? AND layer = 1",
        [RUN_R],
    )
    control = {
        (NAME[r["problem_id"]], r["position"], r["target"], r["match"]): NAME.get(r["control_problem_id"])
        for r in got
    }
    assert {key[0]: c for key, c in control.items() if key[1:] == (0, "step", "exact")} == {
        "R1": "R2",
        "R2": "R3",
        "R3": "R1",  # wraps; R4 has no step
    }
    assert {key[0]: c for key, c in control.items() if key[1:] == (1, "step", "exact")} == {
        "R1": "R3",
        "R3": "R1",
    }
    assert {key[0]: c for key, c in control.items() if key[1:] == (6, "final", "exact")} == {
        "R1": "R2",
        "R2": "R3",
        "R3": "R4",
        "R4": "R1",
    }
    # R4's 7.5 is no 'leading' target: R3's control skips it
    assert control["R3", 6, "final", "leading"] == "R1" and ("R4", 6, "final", "leading") not in control


def test_thought_decoding_discordant_pairs_are_the_problem_rows(db):
    """hit_only / control_only (what a McNemar test needs) count the per-problem rows that disagree."""
    by_cell: dict[tuple, list[int]] = {}
    for r in rows(db, "SELECT * FROM thought_decoding_problems WHERE run_id = ?", [RUN_R]):
        cell = by_cell.setdefault((r["layer"], r["position"], r["target"], r["match"], r["k"]), [0, 0])
        if r["control_hit"] is not None:
            cell[0] += bool(r["hit"] and not r["control_hit"])
            cell[1] += bool(r["control_hit"] and not r["hit"])
    got = decoding(db)
    assert set(got) == set(by_cell)
    assert {key: [r["hit_only"], r["control_only"]] for key, r in got.items()} == by_cell
    assert any(a + b > 0 for a, b in by_cell.values())


def test_thought_decoding_problems_rows(db):
    got = {
        (NAME[r["problem_id"]], r["layer"], r["position"], r["target"], r["match"], r["k"]): r
        for r in rows(db, "SELECT * FROM thought_decoding_problems WHERE run_id = ?", [RUN_R])
    }
    r2 = got["R2", 1, 0, "step", "exact", 1], got["R2", 1, 0, "step", "exact", 3]
    assert [(r["hit"], r["control_hit"], r["best_rank"], r["control_best_rank"]) for r in r2] == [
        (False, False, 2, 3),
        (True, True, 2, 3),
    ]
    assert all(not r["hit"] and not r["control_hit"] for key, r in got.items() if key[1] == -1)  # words only


def reference_decoding() -> dict[tuple, tuple[int, int, int, int]]:
    """Every thought_decoding cell recomputed in Python: (n, hits, control_n, control_hits)."""

    def values(name, position, target, match):
        steps, gold = rd.STEPS[name], rd.PROBLEMS[name][2]
        vals = {
            "step": steps[position : position + 1] if position <= 5 else [],
            "any_step": steps,
            "final": [gold],
        }[target]
        return [v for v in vals if match == "exact" or (v >= 0 and v == int(v))]

    def matches(text, value, match):
        t = text.strip()
        if match == "exact":
            return bool(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", t)) and float(t) == value
        return bool(re.fullmatch(r"[0-9]+", t)) and str(int(value)).startswith(t)

    out = {}
    for (layer, position), by_problem in rd.TOKENS.items():
        for target in ("step", "any_step", "final"):
            for match in ("exact", "leading"):
                have = [n for n in NAMES if values(n, position, target, match)]
                if not have:
                    continue
                for k in KS:
                    hits = control_n = control_hits = 0
                    for i, name in enumerate(have):
                        tokens = by_problem[name][:k]
                        hits += any(
                            matches(t, v, match)
                            for t in tokens
                            for v in values(name, position, target, match)
                        )
                        if len(have) > 1:
                            other = have[(i + 1) % len(have)]
                            control_n += 1
                            control_hits += any(
                                matches(t, v, match)
                                for t in tokens
                                for v in values(other, position, target, match)
                            )
                    out[layer, position, target, match, k] = (len(have), hits, control_n, control_hits)
    return out


def test_thought_decoding_matches_a_recomputation_of_every_cell(db):
    got = decoding(db)
    want = reference_decoding()
    assert set(got) == set(want)
    for key, (n, hits, control_n, control_hits) in want.items():
        r = got[key]
        assert (r["n"], r["hits"], r["control_n"], r["control_hits"]) == (n, hits, control_n, control_hits), (
            key
        )
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson(hits, n), abs=1e-9), key
        assert r["lift"] == pytest.approx(hits / n - control_hits / control_n), key
        assert r["position_name"] == POSITION_NAMES[key[1]]
    assert max(r["hits"] for r in got.values() if r["layer"] == -1) == 0


# --- question_token_routing ----------------------------------------------------------------------------
def head_mean(name, layer, dst, pos):
    means = rd.head_means(name, layer, dst)
    return sum(rd.head_weight(means[pos], h, pos) for h in rd.HEADS) / len(rd.HEADS)


def test_question_token_routing_problems_average_heads_and_rank_within_the_problem(db):
    got = {
        (NAME[r["problem_id"]], r["layer"], r["dst"], r["token_pos"]): r
        for r in rows(db, "SELECT * FROM question_token_routing_problems WHERE run_id = ?", [RUN_R])
    }
    assert len(got) == sum(len(q) for q in rd.QUESTION.values()) * len(rd.LAYERS) * len(rd.DSTS)
    r1 = [got["R1", 0, 0, i] for i in range(7)]  # head means 0.05 0.04 0.20 0.30 0.03 0.10 0.08
    assert [r["weight"] for r in r1] == pytest.approx(rd.WEIGHTS["R1", 0, 0], abs=1e-6)
    assert [r["rank"] for r in r1] == [5, 6, 2, 1, 7, 3, 4]
    assert r1[2]["token_text"] == " 48" and r1[2]["number"] == 48.0 and r1[3]["number"] is None
    assert r1[3]["share"] == pytest.approx(0.30 / 0.80, abs=1e-6)
    # R3 at (0, 0): ' ' and '0' tie at 0.05: the earlier token ranks first
    assert (got["R3", 0, 0, 6]["rank"], got["R3", 0, 0, 8]["rank"]) == (5, 6)
    assert {got["R3", 0, 0, i]["number"] for i in (6, 7, 8)} == {10.0}  # ' 10' as three tokens
    for (name, layer, dst, pos), r in got.items():
        assert r["weight"] == pytest.approx(head_mean(name, layer, dst, pos), abs=1e-6)
        assert r["dst_name"] == POSITION_NAMES[dst]


def test_question_token_routing_groups_tokens_across_problems(db):
    got = {
        (r["layer"], r["dst"], r["token"]): r
        for r in rows(db, "SELECT * FROM question_token_routing WHERE run_id = ?", [RUN_R])
    }
    # ' and': R1 0.03 of 0.80, R3 0.25 of 0.97 (layer 0, T0)
    and_ = got[0, 0, "and"]
    assert (and_["n_problems"], and_["n_occurrences"], and_["is_number"]) == (2, 2, False)
    assert and_["mean_weight"] == pytest.approx((0.03 + 0.25) / 2, abs=1e-6)
    assert and_["share_of_question"] == pytest.approx((0.03 / 0.80 + 0.25 / 0.97) / 2, abs=1e-6)
    # 'A' (R2, 0.02 of 0.60) and ' a' (R4, 0.50 of 0.77) are one token, lowercased and trimmed
    a = got[0, 0, "a"]
    assert (a["n_problems"], a["mean_weight"]) == (2, pytest.approx(0.26, abs=1e-6))
    assert a["share_of_question"] == pytest.approx((0.02 / 0.60 + 0.50 / 0.77) / 2, abs=1e-6)
    # the top token at (0, T0): ' 3' (R2, 0.40) alone
    assert got[0, 0, "3"]["rank"] == 1 and got[0, 0, "3"]["is_number"]
    # then ' apples' 0.30, 'Add' 0.28, ' half' 0.27, 'a' 0.26, ' 48' 0.20, ' then' 0.19, 'and' 0.14
    assert [got[0, 0, t]["rank"] for t in ("apples", "add", "half", "a", "48", "then", "and")] == [
        2,
        3,
        4,
        5,
        6,
        7,
        8,
    ]
    assert got[0, 0, ""]["is_number"]  # R3's ' ' of ' 10'

    # every cell recomputed
    want: dict[tuple, list] = {}
    for name in NAMES:
        for layer in rd.LAYERS:
            for dst in rd.DSTS:
                weights = [head_mean(name, layer, dst, i) for i in range(len(rd.QUESTION[name]))]
                for (text, number), w in zip(rd.QUESTION[name], weights, strict=True):
                    want.setdefault((layer, dst, text.strip().lower()), []).append(
                        (name, w, w / sum(weights), number)
                    )
    assert set(got) == set(want)
    for key, occurrences in want.items():
        r = got[key]
        assert r["mean_weight"] == pytest.approx(sum(o[1] for o in occurrences) / len(occurrences), abs=1e-6)
        assert r["share_of_question"] == pytest.approx(
            sum(o[2] for o in occurrences) / len(occurrences), abs=1e-6
        )
        assert r["n_problems"] == len({o[0] for o in occurrences}) and r["n_occurrences"] == len(occurrences)
        assert r["is_number"] == any(o[3] is not None for o in occurrences)
        higher = {k[2] for k in want if k[:2] == key[:2] and got[k]["mean_weight"] > r["mean_weight"]}
        assert r["rank"] == len(higher) + 1, key


# --- thought_operand_reading -----------------------------------------------------------------------------
def chance(q: int, n_op: int, m: int) -> float:
    return 1 - math.comb(q - n_op, m) / math.comb(q, m)


def test_thought_operand_reading_t0_at_layer_0_by_hand(db):
    """T0 reads step 1's operands: R1 {48, 2} (' 48' only is written: n_op 1 of Q 7; ranked 2nd after
    ' apples'), R2 {3, 4} (n_op 2 of 6; ' 3' ranked 1st), R3 {2, 4} (n_op 2 of 9; top 3 'Add', ' and',
    ' then'). m = 1: R2 hits; m = 3: R1 and R2."""
    got = {
        (r["layer"], r["dst"], r["operands_of"], r["m"]): r
        for r in rows(db, "SELECT * FROM thought_operand_reading WHERE run_id = ?", [RUN_R])
    }
    want = {
        ("step", 1): (3, 1, [chance(7, 1, 1), chance(6, 2, 1), chance(9, 2, 1)]),
        ("step", 3): (3, 2, [1 - 20 / 35, 1 - 4 / 20, 1 - 35 / 84]),
        # any step: R1 {48, 2, 24, 5} (' 48', ' 5': 2 of 7), R3 {2, 4, 6, 10} (2, 4, the three of 10: 5 of 9)
        ("any_step", 1): (3, 1, [2 / 7, 2 / 6, 5 / 9]),
        ("any_step", 3): (3, 2, [1 - 10 / 35, 1 - 4 / 20, 1 - 4 / 84]),
    }
    for (of, m), (n, hits, chances) in want.items():
        r = got[0, 0, of, m]
        assert (r["n"], r["hits"]) == (n, hits), (of, m)
        assert r["rate"] == pytest.approx(hits / n)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson(hits, n), abs=1e-9)
        assert r["chance"] == pytest.approx(sum(chances) / n, abs=1e-9)
        assert r["lift"] == pytest.approx(hits / n - sum(chances) / n, abs=1e-9)
        assert r["dst_name"] == "T0"
    # T1 reads step 2: R1 {24, 5} (' 5' ranked 1st), R3 {6, 10} ('0' of 10 ranked 1st); R2 has no step 2
    t1 = got[0, 1, "step", 1]
    assert (t1["n"], t1["hits"]) == (2, 2)
    assert t1["chance"] == pytest.approx((1 / 7 + 3 / 9) / 2)
    assert not [key for key in got if key[1] == 6]  # thoughts only


def test_thought_operand_reading_matches_a_recomputation(db):
    got = {
        (r["layer"], r["dst"], r["operands_of"], r["m"]): r
        for r in rows(db, "SELECT * FROM thought_operand_reading WHERE run_id = ?", [RUN_R])
    }
    want: dict[tuple, list] = {}
    for name in NAMES:
        for layer in rd.LAYERS:
            for dst in (0, 1):
                weights = [head_mean(name, layer, dst, i) for i in range(len(rd.QUESTION[name]))]
                order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
                steps = rd.OPERANDS[name]
                for of, operands in (
                    ("step", steps[dst] if dst < len(steps) else []),
                    ("any_step", [x for s in steps for x in s]),
                ):
                    is_op = [number in operands for _t, number in rd.QUESTION[name]]
                    if not any(is_op):
                        continue
                    for m in (1, 3):
                        hit = any(is_op[i] for i in order[:m])
                        want.setdefault((layer, dst, of, m), []).append(
                            (hit, chance(len(weights), sum(is_op), m))
                        )
    assert set(got) == set(want)
    for key, problems in want.items():
        r = got[key]
        hits = sum(h for h, _c in problems)
        assert (r["n"], r["hits"]) == (len(problems), hits), key
        assert r["chance"] == pytest.approx(sum(c for _h, c in problems) / len(problems), abs=1e-9), key


# --- probe_summary, probe_best -------------------------------------------------------------------------
def test_probe_summary_reads_the_newest_set_with_holm_adjusted_p(db):
    got = rows(db, "SELECT * FROM probe_summary WHERE run_id = ? ORDER BY p_value", [RUN_R])
    assert len(got) == len(rd.PROBES) and {r["probe_set"] for r in got} == {"new"}  # not 'old' (older)
    p = [r["p_value"] for r in got]
    reject, holm, _s, _b = multipletests(p, alpha=0.05, method="holm")
    assert [r["p_holm"] for r in got] == pytest.approx(list(holm), abs=1e-12)
    assert [r["above_chance"] for r in got] == list(reject)
    # by hand: p sorted 0.001 0.002 0.01 0.02 0.03 0.03 0.04 0.2 0.5, m = 9
    by_hand = [0.009, 0.016, 0.07, 0.12, 0.15, 0.15, 0.15, 0.4, 0.5]
    assert [r["p_holm"] for r in got] == pytest.approx(by_hand, abs=1e-12)
    assert sum(r["above_chance"] for r in got) == 2
    for r in got:
        assert r["lift"] == pytest.approx(r["score"] - r["chance"])
        assert r["n_tests"] == 9
    assert {r["position_name"] for r in got} == {"T0", "T1", "T2", "EOT"}


def test_probe_best_takes_the_top_score_lower_layer_then_position(db):
    got = {
        (r["target"], r["step"]): r for r in rows(db, "SELECT * FROM probe_best WHERE run_id = ?", [RUN_R])
    }
    assert set(got) == {("value", 1), ("value", 2), ("operation", 1), ("n_steps", None)}
    best = got["value", 1]  # 0.45 three times: (T0, L1), (T1, L0), (T2, L0): layer 0 first, then T1 before T2
    assert (best["position"], best["layer"], best["score"]) == (1, 0, 0.45)
    assert best["p_holm"] == pytest.approx(0.15) and best["above_chance"] is False
    assert (best["chance"], best["shuffled"], best["ci_low"], best["ci_high"]) == pytest.approx(
        (0, 0.01, 0.35, 0.55)
    )
    op = got["operation", 1]
    assert (op["position"], op["layer"], op["p_holm"], op["above_chance"]) == (
        0,
        0,
        pytest.approx(0.009),
        True,
    )
    assert op["lift"] == pytest.approx(0.3)
    assert (got["n_steps", None]["layer"], got["n_steps", None]["position"]) == (1, 6)
    assert got["value", 2]["score"] == 0.20


# --- the failed run ------------------------------------------------------------------------------------
READOUT_VIEWS = [
    "stg_decoding",
    "stg_question_tokens",
    "stg_token_attention",
    "stg_probe_results",
    "thought_decoding",
    "thought_decoding_problems",
    "question_token_routing",
    "question_token_routing_problems",
    "thought_operand_reading",
    "probe_summary",
    "probe_best",
]


def test_a_failed_runs_rows_are_not_read(db):
    for view in READOUT_VIEWS:
        counts = rows(db, f"SELECT run_id, count(*) AS n FROM {view} GROUP BY run_id")
        assert [(r["run_id"], r["n"] > 0) for r in counts] == [(RUN_R, True)], view
    stored = rows(db, "SELECT count(*) AS n FROM decoding WHERE run_id = ?", [RUN_F])
    assert stored[0]["n"] > 0  # the rows are there: the views leave them out


# --- question_token_roles ----------------------------------------------------------------------------
def test_question_token_roles_recomputed_from_the_token_weights(db):
    """Every (layer, query, role) cell from int_question_token_weights and the steps' operands by hand: per
    problem the role's share of the question weight and of the tokens, averaged over the problems that have
    the thought's step (EOT: all), with a normal interval of the mean share."""
    import statistics

    weights = rows(db, "SELECT * FROM int_question_token_weights WHERE run_id = ?", [RUN_R])
    pid_name = {pid: n for n, pid in PID.items()}
    roles = ("own_step_operand", "other_step_operand", "other_number", "word")
    cells: dict[tuple, list[tuple[float, float]]] = {}
    by_query: dict[tuple, list[dict]] = {}
    for w in weights:
        by_query.setdefault((w["problem_id"], w["layer"], w["dst"]), []).append(w)
    for (pid, layer, dst), tokens in by_query.items():
        operands = rd.OPERANDS[pid_name[pid]]
        if dst < 6 and dst >= len(operands):
            continue  # the problem has no step dst+1
        own = set(operands[dst]) if dst < 6 else set()
        every = {x for step in operands for x in step}
        total = sum(t["weight"] for t in tokens)

        def role(t, own=own, every=every):
            if t["number"] is None:
                return "word"
            return (
                "own_step_operand"
                if t["number"] in own
                else ("other_step_operand" if t["number"] in every else "other_number")
            )

        for r in roles:
            mine = [t for t in tokens if role(t) == r]
            share = sum(t["weight"] for t in mine) / total
            cells.setdefault((layer, dst, r), []).append((share, len(mine) / len(tokens)))
    got = {
        (r["layer"], r["dst"], r["role"]): r
        for r in rows(db, "SELECT * FROM question_token_roles WHERE run_id = ?", [RUN_R])
    }
    assert set(got) == set(cells)
    for key, values in cells.items():
        shares = [s for s, _ in values]
        row = got[key]
        assert row["n"] == len(values), key
        assert row["mean_share"] == pytest.approx(statistics.mean(shares), abs=1e-9), key
        assert row["mean_token_share"] == pytest.approx(statistics.mean(t for _, t in values), abs=1e-12), key
        if len(values) > 1:
            half = 1.959963984540054 * statistics.stdev(shares) / math.sqrt(len(values))
            assert row["ci_low"] == pytest.approx(statistics.mean(shares) - half, abs=1e-9), key
    # the four roles split each query's attention: their mean shares sum to 1
    for layer, dst, _ in cells:
        total = sum(got[(layer, dst, r)]["mean_share"] for r in roles)
        assert total == pytest.approx(1.0, abs=1e-9)
    assert any(k[2] == "own_step_operand" and got[k]["mean_share"] > 0 for k in got)
