"""A small warehouse with hand-picked numbers, so every view's answer can be worked out by hand.

Run A (gpt2-tiny, patch layer 1, complete): problems P1..P4, conditions baseline + 6 thoughts x
(zero, gauss 0.5, clean); 2 layers x 2 heads of attention for the baseline and, as a decoy that no
baseline view may read, for condition 1 (T0 zero).
  - P1 (2 steps), P2 (3 steps), P3 (5 steps) are baseline-correct; P4 (1 step) is baseline-wrong.
  - failures: P1 at T0 zero, T0 gauss, T1 zero; P2 at T0 zero and at T3 clean (a control that
    misbehaves: excluded from pooled importance); P3 at T0, T1, T2 zero. P4 is right only at T5 zero.
  - kl_answer: zero = thought + 1, gauss 0.5, clean 0; kl_first = kl_answer / 10.
  - logp_gold: baseline -1 (P4: -5), zero -3, gauss -2, clean -1. disruption: zero 0.4, gauss 0.2, clean 0.
  - baseline attention of problem index p (P1=0 .. P4=3), layer l, head h:
      A[Ti -> Ti-1] = PREV[l,h] + 0.02 p (i = 1..5), A[Ti -> Ti] = SELF[l,h],
      A[T5 -> T0] = SKIP[l,h], A[EOT -> Tk] = EOT_BASE[l][k] + 0.01 p + 0.02 h,
      the rest of each query row on the question (src -2); every other visible key 0.
Run B (model "other", patch layer 0, still running, no attention): P1, P2, P5 (4 steps),
  conditions baseline + 6 thoughts x (zero, gauss 0.5). P1 baseline-correct, fails at T0 zero; P2
  baseline-wrong, right only at T2 gauss; P5 baseline-correct, fails at T0 zero, T0 gauss, T3 zero.
  kl_answer: zero = 2 (thought + 1), gauss 1.
Run C (legacy convention, complete): P1 only, baseline + 6 thoughts x zero; fails at T2.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import warehouse as wh

RUN_A, RUN_B, RUN_C = "run-a", "run-b", "run-c"
PROBLEMS = {"P1": 2, "P2": 3, "P3": 5, "P4": 1, "P5": 4}  # problem -> n_steps
PID = {name: f"{name.lower()}-0000000000" for name in PROBLEMS}
N_LAYERS, N_HEADS = 2, 2
PREV = {(0, 0): 0.5, (0, 1): 0.1, (1, 0): 0.3, (1, 1): 0.2}
SELF = {(0, 0): 0.2, (0, 1): 0.6, (1, 0): 0.1, (1, 1): 0.3}
SKIP = {(0, 0): 0.0, (0, 1): 0.2, (1, 0): 0.4, (1, 1): 0.1}
EOT_BASE = {0: [0.25, 0.15, 0.10, 0.05, 0.05, 0.05], 1: [0.05, 0.05, 0.10, 0.10, 0.15, 0.20]}

A_FAILS = {
    "P1": {(0, "zero"), (0, "gauss"), (1, "zero")},
    "P2": {(0, "zero"), (3, "clean")},
    "P3": {(0, "zero"), (1, "zero"), (2, "zero")},
}
A_BASE_CORRECT = {"P1": True, "P2": True, "P3": True, "P4": False}
A_FIXED = {"P4": {(5, "zero")}}
B_BASE_CORRECT = {"P1": True, "P2": False, "P5": True}
B_FAILS = {"P1": {(0, "zero")}, "P5": {(0, "zero"), (0, "gauss"), (3, "zero")}}
B_FIXED = {"P2": {(2, "gauss")}}

SIGMA = {"zero": None, "gauss": 0.5, "clean": None}
KL_A = {"zero": lambda k: k + 1.0, "gauss": lambda k: 0.5, "clean": lambda k: 0.0}
KL_B = {"zero": lambda k: 2 * (k + 1.0), "gauss": lambda k: 1.0}
LOGP = {"zero": -3.0, "gauss": -2.0, "clean": -1.0}
DISRUPTION = {"zero": 0.4, "gauss": 0.2, "clean": 0.0}


def problem_rows(names):
    return [
        {
            "problem_id": PID[n],
            "question": f"question {n}",
            "gold_answer": 1.0,
            "n_steps": PROBLEMS[n],
            "source": "hand",
            "source_id": n,
        }
        for n in names
    ]


def results_rows(names, methods, base_correct, fails, fixed, kl, patch_layer):
    """Baseline (condition 0) then thought x method; correct = baseline's answer unless listed."""
    rows = []
    for name in names:
        ok = base_correct[name]
        base_logp = -1.0 if ok else -5.0
        rows.append(
            {
                "problem_id": PID[name],
                "condition_id": 0,
                "layer": None,
                "thought": None,
                "method": "baseline",
                "sigma": None,
                "correct": ok,
                "flipped": False,
                "fixed": False,
                "kl_first": 0.0,
                "kl_answer": 0.0,
                "logp_gold": base_logp,
                "disruption": 0.0,
            }
        )
        cid = 1
        for k in range(6):
            for m in methods:
                correct = (k, m) not in fails.get(name, set()) if ok else (k, m) in fixed.get(name, set())
                rows.append(
                    {
                        "problem_id": PID[name],
                        "condition_id": cid,
                        "layer": patch_layer,
                        "thought": k,
                        "method": m,
                        "sigma": SIGMA[m],
                        "correct": correct,
                        "flipped": ok and not correct,
                        "fixed": (not ok) and correct,
                        "kl_first": kl[m](k) / 10,
                        "kl_answer": kl[m](k),
                        "logp_gold": LOGP[m],
                        "disruption": DISRUPTION[m],
                    }
                )
                cid += 1
    return rows


def baseline_matrix(layer: int, head: int, p: int) -> np.ndarray:
    """[7 queries T0..T5, EOT] x [9 keys Q, BOT, T0..T5, EOT] baseline attention of problem index p."""
    m = np.zeros((7, 9))
    for i in range(6):
        m[i, 2 + i] = SELF[layer, head]
        if i >= 1:
            m[i, 2 + i - 1] = PREV[layer, head] + 0.02 * p
    m[5, 2] += SKIP[layer, head]
    for k in range(6):
        m[6, 2 + k] = EOT_BASE[layer][k] + 0.01 * p + 0.02 * head
    m[:, 0] = 1 - m.sum(1)
    return m


def decoy_matrix() -> np.ndarray:
    """Uniform over the visible keys: what a corrupted condition attends to here."""
    visible = np.array([[s <= d + 2 for s in range(9)] for d in range(7)], dtype=float)
    return visible / visible.sum(1, keepdims=True)


def attention_rows(names) -> pa.Table:
    dst_codes, src_codes = [0, 1, 2, 3, 4, 5, 6], [-2, -1, 0, 1, 2, 3, 4, 5, 6]
    cols = {k: [] for k in ("problem_id", "condition_id", "layer", "head", "dst", "src", "weight")}
    for p, name in enumerate(names):
        for cid in (0, 1):
            for layer in range(N_LAYERS):
                for head in range(N_HEADS):
                    m = baseline_matrix(layer, head, p) if cid == 0 else decoy_matrix()
                    for d in range(7):
                        for s in range(d + 3):  # keys visible to query d: Q, BOT, T0..Td
                            for key, value in zip(
                                cols,
                                (PID[name], cid, layer, head, dst_codes[d], src_codes[s], m[d, s]),
                                strict=True,
                            ):
                                cols[key].append(value)
    return pa.table(cols)


def build(path) -> str:
    """Write the three runs into a new warehouse at `path`; returns its path."""
    store = wh.open_warehouse(path, durable=False)
    a_names = ["P1", "P2", "P3", "P4"]
    run = store.begin_run(
        {"hand": "A"},
        run_id=RUN_A,
        model_name="gpt2-tiny",
        n_layers=N_LAYERS,
        n_heads=N_HEADS,
        patch_layers=[1],
    )
    store.append_problems(
        run,
        problem_rows(a_names),
        results_rows(a_names, ["zero", "gauss", "clean"], A_BASE_CORRECT, A_FAILS, A_FIXED, KL_A, 1),
        attention_rows(a_names),
    )
    store.finish_run(run)
    b_names = ["P1", "P2", "P5"]
    run = store.begin_run(
        {"hand": "B"}, run_id=RUN_B, model_name="other", n_layers=4, n_heads=4, patch_layers=[0]
    )
    store.append_problems(
        run,
        problem_rows(b_names),
        results_rows(b_names, ["zero", "gauss"], B_BASE_CORRECT, B_FAILS, B_FIXED, KL_B, 0),
    )
    run = store.begin_run({"hand": "C"}, run_id=RUN_C, model_name="research-gpt2", convention="legacy")
    store.append_problems(
        run,
        problem_rows(["P1"]),
        results_rows(["P1"], ["zero"], {"P1": True}, {"P1": {(2, "zero")}}, {}, KL_A, 6),
    )
    store.finish_run(run)
    return str(store.path)


def rows(db, sql: str, params=()) -> list[dict]:
    """Query results as dicts, read with the store's reader."""
    store = wh.open_warehouse(db, read_only=True)
    with store.reader() as con:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
