"""A small warehouse for the pairs / triplets and components families, with numbers worked out by hand.

Run X (codi, patch layer 1, complete): problems Q1..Q6; Q1..Q5 baseline-correct, Q6 baseline-wrong (it
never flips). Rows, written as the engine writes them (family, site, thoughts, parts):
  - thoughts (single thoughts at the block output): T0..T3 x zero for every problem, T0 and T1 x mean for
    Q1..Q4 and T0 x mean for Q5 (Q5 lacks T1 mean: the mean pair is incomplete there).
      zero fails: T0 {Q1, Q2}, T1 {Q2, Q3}, T2 {Q4}, T3 none;   mean fails: T0 {Q1}.
  - pairs x zero: [0, 1] fails {Q1..Q5}, [0, 2] {Q1}, [1, 2] {Q2, Q3, Q4};  pairs x mean: [0, 1] {Q1, Q5}.
  - triplets x zero: [0, 1, 2] fails {Q1, Q2, Q3, Q4}.
  - components x zero, T0 and T1: attn fails T0 {Q1, Q2, Q3}, T1 none; mlp fails T0 {Q3}, T1 {Q2, Q3}.
  log p(gold): baseline -1 (Q6: -5); thoughts zero -2 - k, mean -1.5; pairs zero -6, mean -3;
  triplets -8; attn -2.5, mlp -1.5. kl_answer: thoughts k + 1, pairs 4, triplets 6, attn 2, mlp 1.
Run Y: run X again, except that [0, 1] x zero fails only {Q1, Q2} and components T0 mlp fails
  {Q1, Q2, Q3} (compare).
Run Z (classic only, stored without the schema-6 columns, as older rows are): Q1, Q2 baseline-correct,
  T0..T5 x zero, Q1 fails at T0.
"""

from __future__ import annotations

import json
from typing import Any

import warehouse as wh

RUN_X, RUN_Y, RUN_Z = "run-x", "run-y", "run-z"
NAMES = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]
PID = {n: f"{n.lower()}-0000000000" for n in NAMES}
BASE_CORRECT = {n: n != "Q6" for n in NAMES}
LAYER = 1

SINGLE_FAILS = {
    ("zero", 0): {"Q1", "Q2"},
    ("zero", 1): {"Q2", "Q3"},
    ("zero", 2): {"Q4"},
    ("zero", 3): set(),
    ("mean", 0): {"Q1"},
    ("mean", 1): set(),
}
SINGLE_MISSING = {("mean", 0): {"Q6"}, ("mean", 1): {"Q5", "Q6"}}  # problems without the row
COMBO_FAILS = {
    ("zero", (0, 1)): {"Q1", "Q2", "Q3", "Q4", "Q5"},
    ("zero", (0, 2)): {"Q1"},
    ("zero", (1, 2)): {"Q2", "Q3", "Q4"},
    ("mean", (0, 1)): {"Q1", "Q5"},
    ("zero", (0, 1, 2)): {"Q1", "Q2", "Q3", "Q4"},
}
COMPONENT_FAILS = {
    ("attn", 0): {"Q1", "Q2", "Q3"},
    ("attn", 1): set(),
    ("mlp", 0): {"Q3"},
    ("mlp", 1): {"Q2", "Q3"},
}
Y_COMBO = {("zero", (0, 1)): {"Q1", "Q2"}}
Y_COMPONENT = {("mlp", 0): {"Q1", "Q2", "Q3"}}

BASE_LOGP = {n: (-1.0 if BASE_CORRECT[n] else -5.0) for n in NAMES}


def single_logp(method: str, k: int) -> float:
    return -2.0 - k if method == "zero" else -1.5


COMBO_LOGP = {("zero", 2): -6.0, ("mean", 2): -3.0, ("zero", 3): -8.0}
COMPONENT_LOGP = {"attn": -2.5, "mlp": -1.5}
COMPONENT_KL = {"attn": 2.0, "mlp": 1.0}


def _row(name: str, cid: int, fails: bool, **cols: Any) -> dict:
    ok = BASE_CORRECT[name]
    correct = ok and not fails
    return {
        "problem_id": PID[name],
        "condition_id": cid,
        "correct": correct,
        "flipped": ok and not correct,
        "fixed": False,
        **cols,
    }


def _parts(site: str, steps: list[int], method: str) -> str:
    return json.dumps([{"site": site, "layer": LAYER, "steps": steps, "method": method}])


def results_rows(combo_fails: dict, component_fails: dict) -> list[dict]:
    rows = []
    for name in NAMES:
        rows.append(
            _row(
                name, 0, False, method="baseline", family="baseline", logp_gold=BASE_LOGP[name], kl_answer=0.0
            )
        )
        cid = 1
        for (method, k), failing in SINGLE_FAILS.items():
            if name not in SINGLE_MISSING.get((method, k), set()):
                rows.append(
                    _row(
                        name,
                        cid,
                        name in failing,
                        layer=LAYER,
                        thought=k,
                        method=method,
                        family="thoughts",
                        site="block",
                        thoughts=[k],
                        parts=_parts("block", [k], method),
                        logp_gold=single_logp(method, k),
                        kl_answer=k + 1.0,
                    )
                )
            cid += 1
        for (method, combo), failing in combo_fails.items():
            rows.append(
                _row(
                    name,
                    cid,
                    name in failing,
                    layer=LAYER,
                    method=method,
                    family="pairs" if len(combo) == 2 else "triplets",
                    site="block",
                    thoughts=list(combo),
                    parts=_parts("block", list(combo), method),
                    logp_gold=COMBO_LOGP[method, len(combo)],
                    kl_answer=2.0 * len(combo),
                )
            )
            cid += 1
        for (site, k), failing in component_fails.items():
            rows.append(
                _row(
                    name,
                    cid,
                    name in failing,
                    layer=LAYER,
                    thought=k,
                    method="zero",
                    family="components",
                    site=site,
                    thoughts=[k],
                    parts=_parts(site, [k], "zero"),
                    logp_gold=COMPONENT_LOGP[site],
                    kl_answer=COMPONENT_KL[site],
                )
            )
            cid += 1
    return rows


def problem_rows(names: list[str]) -> list[dict]:
    return [
        {
            "problem_id": PID[n],
            "question": f"question {n}",
            "gold_answer": 1.0,
            "n_steps": 3,
            "source": "hand",
        }
        for n in names
    ]


def classic_rows() -> list[dict]:
    """Run Z: no family, site or thoughts given (NULL, as rows stored before schema 6)."""
    rows = []
    for name in ("Q1", "Q2"):
        rows.append(_row(name, 0, False, method="baseline", logp_gold=-1.0, kl_answer=0.0))
        for k in range(6):
            rows.append(
                _row(
                    name,
                    k + 1,
                    name == "Q1" and k == 0,
                    layer=LAYER,
                    thought=k,
                    method="zero",
                    logp_gold=-2.0,
                    kl_answer=1.0,
                )
            )
    return rows


def build(path) -> str:
    store = wh.open_warehouse(path, durable=False)
    for run_id, combos, components in (
        (RUN_X, COMBO_FAILS, COMPONENT_FAILS),
        (RUN_Y, {**COMBO_FAILS, **Y_COMBO}, {**COMPONENT_FAILS, **Y_COMPONENT}),
    ):
        run = store.begin_run(
            {"hand": run_id},
            run_id=run_id,
            model_name="gpt2-tiny",
            n_layers=2,
            n_heads=2,
            patch_layers=[LAYER],
            methods=["zero", "mean"],
        )
        store.append_problems(run, problem_rows(NAMES), results_rows(combos, components))
        store.finish_run(run)
    run = store.begin_run(
        {"hand": "Z"}, run_id=RUN_Z, model_name="gpt2-tiny", n_layers=2, n_heads=2, patch_layers=[LAYER]
    )
    store.append_problems(run, problem_rows(["Q1", "Q2"]), classic_rows())
    store.finish_run(run)
    return str(store.path)


def rows(db, sql: str, params=()) -> list[dict]:
    store = wh.open_warehouse(db, read_only=True)
    with store.reader() as con:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
