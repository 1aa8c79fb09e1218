"""Hand-made rows of the heads and edges families (schema 6): their views' answers worked out by hand.

The warehouse is tests/views_data.py's (runs A, B, C: classic rows only) plus two runs of the families:

Run H (gpt2-tiny shaped, 2 layers x 2 heads, complete): problems P1..P5, views_data's baseline attention
(so head_metrics and hub_scores have rows; the descriptive hub is T4), no classic rows.
  - baseline: P1, P2, P3, P5 correct (logp_gold -1), P4 wrong (logp_gold -5).
  - heads family (site 'head'): each head (layer, head) zeroed and mean-ablated at all six steps; L1H0
    zeroed at T2 alone; L0H0's clean control at all six steps; the top-2 set {L0H0, L1H0} zeroed together
    at all six steps (layer and head NULL, parts listing both).
  - edges family (site 'edge', method knockout): key thought T0..T5 at every layer (layer NULL) and at
    layer 1; a clean control at T2, every layer.
  - HEAD_FAILS / EDGE_FAILS list which baseline-correct problems fail under each condition; P4 is wrong
    under every condition.
  - logp_gold of a condition row: the baseline's minus DROP_FAIL when it fails, else minus
    0.25 * (problem index + 1) (P1 = index 0 .. P5 = index 4), so every mean drop is a known sum.
Run H2 (no attention, running): P1, P2, P3, all baseline-correct; L0H0 and L1H0 zeroed at all six steps,
  and the edges knockout of T4 at every layer: what `compare` pairs with run H.
"""

from __future__ import annotations

import json

import views_data as vd

import warehouse as wh

RUN_H, RUN_H2 = "run-h", "run-h2"
H_NAMES = ["P1", "P2", "P3", "P4", "P5"]
H_BASE_CORRECT = {"P1": True, "P2": True, "P3": True, "P4": False, "P5": True}
H2_NAMES = ["P1", "P2", "P3"]
ALL = (0, 1, 2, 3, 4, 5)
DROP_FAIL = 2.0
HEADS = [(0, 0), (0, 1), (1, 0), (1, 1)]
TOPK = [(0, 0), (1, 0)]  # the heads ablated together

# (layer, head, method, steps) -> baseline-correct problems that fail; head None: the top-k set
HEAD_FAILS: dict[tuple, set[str]] = {
    (0, 0, "zero", ALL): {"P1", "P2", "P3"},
    (0, 1, "zero", ALL): {"P1"},
    (1, 0, "zero", ALL): {"P1", "P2"},
    (1, 1, "zero", ALL): set(),
    (0, 0, "mean", ALL): {"P1"},
    (0, 1, "mean", ALL): set(),
    (1, 0, "mean", ALL): set(),
    (1, 1, "mean", ALL): set(),
    (1, 0, "zero", (2,)): {"P3"},
    (0, 0, "clean", ALL): set(),
    (None, None, "zero", ALL): {"P1", "P2", "P3", "P5"},
}
# (layer or None for every layer, key thought, method) -> baseline-correct problems that fail
EDGE_FAILS: dict[tuple, set[str]] = {
    (None, 0, "knockout"): {"P1"},
    (None, 1, "knockout"): {"P1", "P2"},
    (None, 2, "knockout"): set(),
    (None, 3, "knockout"): {"P3"},
    (None, 4, "knockout"): {"P1", "P2", "P3", "P5"},
    (None, 5, "knockout"): set(),
    (1, 0, "knockout"): set(),
    (1, 1, "knockout"): set(),
    (1, 2, "knockout"): set(),
    (1, 3, "knockout"): set(),
    (1, 4, "knockout"): {"P1", "P2"},
    (1, 5, "knockout"): set(),
    (None, 2, "clean"): set(),
}
H2_HEAD_FAILS = {(0, 0, "zero", ALL): {"P1"}, (1, 0, "zero", ALL): {"P1", "P2", "P3"}}
H2_EDGE_FAILS = {(None, 4, "knockout"): {"P2"}}


def base_logp(name: str, base_correct: dict[str, bool]) -> float:
    return -1.0 if base_correct[name] else -5.0


def drop(name: str, failed: bool) -> float:
    """The log p(gold) drop of a condition row: DROP_FAIL on a failure, else 0.25 x (problem index + 1)."""
    return DROP_FAIL if failed else 0.25 * (H_NAMES.index(name) + 1)


def _row(name, cid, base_correct, failed, **fields) -> dict:
    ok = base_correct[name]
    correct = ok and not failed
    return {
        "problem_id": vd.PID[name],
        "condition_id": cid,
        "correct": correct,
        "flipped": ok and not correct,
        "fixed": False,
        "kl_answer": 1.0 if failed else 0.1,
        "logp_gold": base_logp(name, base_correct) - drop(name, failed),
        **fields,
    }


def head_part(layer, head, method, steps) -> dict:
    return {"site": "head", "layer": layer, "steps": list(steps), "method": method, "head": head}


def results_rows(names, base_correct, head_fails, edge_fails) -> list[dict]:
    rows = []
    for name in names:
        ok = base_correct[name]
        rows.append(
            {
                "problem_id": vd.PID[name],
                "condition_id": 0,
                "method": "baseline",
                "family": "baseline",
                "correct": ok,
                "flipped": False,
                "fixed": False,
                "kl_answer": 0.0,
                "logp_gold": base_logp(name, base_correct),
            }
        )
        cid = 1
        for (layer, head, method, steps), fails in head_fails.items():
            if head is None:
                parts = [head_part(lay, h, method, steps) for lay, h in TOPK]
            else:
                parts = [head_part(layer, head, method, steps)]
            rows.append(
                _row(
                    name,
                    cid,
                    base_correct,
                    ok and name in fails,
                    family="heads",
                    site="head",
                    layer=layer,
                    head=head,
                    method=method,
                    thoughts=list(steps),
                    thought=steps[0] if len(steps) == 1 else None,
                    parts=json.dumps(parts),
                )
            )
            cid += 1
        for (layer, key, method), fails in edge_fails.items():
            part = {"site": "edge", "layer": layer, "steps": [key], "method": method, "key": key}
            rows.append(
                _row(
                    name,
                    cid,
                    base_correct,
                    ok and name in fails,
                    family="edges",
                    site="edge",
                    layer=layer,
                    method=method,
                    thought=key,
                    thoughts=[key],
                    parts=json.dumps([part]),
                )
            )
            cid += 1
    return rows


def build(path) -> str:
    """views_data's warehouse at `path` plus runs H and H2; returns its path."""
    db = vd.build(path)
    store = wh.open_warehouse(db, durable=False)
    run = store.begin_run(
        {"hand": "H"},
        run_id=RUN_H,
        model_name="gpt2-tiny",
        n_layers=vd.N_LAYERS,
        n_heads=vd.N_HEADS,
        patch_layers=[],
    )
    store.append_problems(
        run,
        vd.problem_rows(H_NAMES),
        results_rows(H_NAMES, H_BASE_CORRECT, HEAD_FAILS, EDGE_FAILS),
        vd.attention_rows(H_NAMES),
    )
    store.finish_run(run)
    run = store.begin_run(
        {"hand": "H2"}, run_id=RUN_H2, model_name="gpt2-tiny", n_layers=2, n_heads=2, patch_layers=[]
    )
    base = dict.fromkeys(H2_NAMES, True)
    store.append_problems(
        run, vd.problem_rows(H2_NAMES), results_rows(H2_NAMES, base, H2_HEAD_FAILS, H2_EDGE_FAILS)
    )
    return db
