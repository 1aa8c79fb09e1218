"""Hand-made readout rows (schema 7): decoding, question tokens, token attention and probe results, so the
readout views' answers can be worked out by hand (tests/test_views_readouts.py).

Run R (complete, 2 layers x 2 heads), problems R1..R4 in this order (ordinals 0..3):
  - R1: steps 48/2=24, 24+5=29; gold 29. R2: 3*4=12; gold 12. R3: 2+4=6, 6*10=60; gold 60.
    R4: no annotations; gold 7.5 (not an integer: no 'leading' final target).
  - decoding at layers -1 and 1, positions T0, T1 and EOT, ranks 1..3 (TOKENS): layer -1 decodes to
    words only; layer 1 as listed.
  - question tokens (QUESTION): R3 writes 10 as three tokens ' ', '1', '0' (a digit tokenizer).
  - token attention at layers 0 and 1, queries T0, T1 and EOT: the head mean of each question token is
    WEIGHTS[problem, layer, dst] where given, else filler(); head 0 = mean + d, head 1 = mean - d.
  - probe sets 'old' (2024-01-01, one row) and 'new' (2024-02-01, PROBES): only 'new' is current.
Run F (failed): R1, R2 with decoding that always hits, attention, question tokens and a probe set: no view
may read it.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

import warehouse as wh

RUN_R, RUN_F = "run-r", "run-f"
NAMES = ["R1", "R2", "R3", "R4"]
PID = {n: f"{n.lower()}-readout00" for n in NAMES}
PROBLEMS = {
    "R1": (
        "Tom has 48 apples and 5 pears",
        "Half: 48/2 = <<48/2=24>>24. Then 24+5 = <<24+5=29>>29.",
        29.0,
        2,
    ),
    "R2": ("A box of 3 by 4", "3*4 = <<3*4=12>>12", 12.0, 1),
    "R3": ("Add 2 and 4 then times 10", "2+4 = <<2+4=6>>6, 6*10 = <<6*10=60>>60", 60.0, 2),
    "R4": ("a half", "It is 7.5.", 7.5, 1),
}
STEPS = {"R1": [24.0, 29.0], "R2": [12.0], "R3": [6.0, 60.0], "R4": []}  # step values, step 1 first
OPERANDS = {"R1": [[48.0, 2.0], [24.0, 5.0]], "R2": [[3.0, 4.0]], "R3": [[2.0, 4.0], [6.0, 10.0]], "R4": []}

WORDS = [" the", " a", " of"]
# (layer, position) -> problem -> token texts at ranks 1, 2, 3
TOKENS = {
    (1, 0): {
        "R1": [" 24", " the", " 2"],
        "R2": ["1", " 12", " 6"],
        "R3": [" apples", " 60", "."],
        "R4": [" 7", ".", "5"],
    },
    (1, 1): {
        "R1": [" 29", " 24", " x"],
        "R2": [" 12", " y", " z"],
        "R3": [" 6", " 0", " 1"],
        "R4": [" a", " b", " c"],
    },
    (1, 6): {
        "R1": [" 29", " the", " a"],
        "R2": [" The", " 12", " 3"],
        "R3": ["6", "0", " the"],
        "R4": [" 7", ".5", " 7.5"],
    },
    **{(-1, p): {n: WORDS for n in NAMES} for p in (0, 1, 6)},
}
PROBS = [0.5, 0.3, 0.2]

# problem -> [(token text, number)]
QUESTION = {
    "R1": [("Tom", None), (" has", None), (" 48", 48.0), (" apples", None), (" and", None), (" 5", 5.0)]
    + [(" pears", None)],
    "R2": [("A", None), (" box", None), (" of", None), (" 3", 3.0), (" by", None), (" 4", 4.0)],
    "R3": [("Add", None), (" 2", 2.0), (" and", None), (" 4", 4.0), (" then", None), (" times", None)]
    + [(" ", 10.0), ("1", 10.0), ("0", 10.0)],
    "R4": [(" a", None), (" half", None)],
}
LAYERS, HEADS, DSTS = (0, 1), (0, 1), (0, 1, 6)
WEIGHTS = {
    ("R1", 0, 0): [0.05, 0.04, 0.20, 0.30, 0.03, 0.10, 0.08],
    ("R2", 0, 0): [0.02, 0.05, 0.03, 0.40, 0.06, 0.04],
    ("R3", 0, 0): [0.28, 0.03, 0.25, 0.04, 0.19, 0.02, 0.05, 0.06, 0.05],
    ("R4", 0, 0): [0.50, 0.27],
    ("R1", 0, 1): [0.05, 0.04, 0.06, 0.03, 0.02, 0.35, 0.08],
    ("R3", 0, 1): [0.10, 0.05, 0.04, 0.03, 0.02, 0.09, 0.08, 0.07, 0.30],
}


def filler(name: str, layer: int, dst: int) -> list[float]:
    """The head-mean weights of the cells WEIGHTS leaves out: distinct, positive, summing below 1."""
    q = len(QUESTION[name])
    return [0.02 + 0.01 * ((7 * i + 3 * layer + dst + NAMES.index(name)) % 9) for i in range(q)]


def head_means(name: str, layer: int, dst: int) -> list[float]:
    return WEIGHTS.get((name, layer, dst)) or filler(name, layer, dst)


def head_weight(mean: float, head: int, pos: int) -> float:
    d = 0.01 if pos % 2 == 0 else -0.015
    return mean + (d if head == 0 else -d)


# probe rows of the current set: (target, step, position, layer, score, chance, p_value)
PROBES = [
    ("value", 1, 0, 0, 0.30, 0.0, 0.01),
    ("value", 1, 0, 1, 0.45, 0.0, 0.002),
    (
        "value",
        1,
        1,
        0,
        0.45,
        0.0,
        0.03,
    ),  # ties 0.45 with (T0, L1) and (T2, L0): the lower layer, then position
    ("value", 1, 2, 0, 0.45, 0.0, 0.5),
    ("value", 2, 1, 1, 0.20, 0.0, 0.04),
    ("operation", 1, 0, 0, 0.80, 0.5, 0.001),
    ("operation", 1, 0, 1, 0.60, 0.5, 0.2),
    ("n_steps", None, 6, 1, 0.70, 0.4, 0.02),
    ("n_steps", None, 6, 0, 0.50, 0.4, 0.03),
]
OLD_PROBE = ("value", 1, 0, 0, 0.99, 0.0, 0.001)


def problem_rows(names):
    return [
        {
            "problem_id": PID[n],
            "question": PROBLEMS[n][0],
            "solution": PROBLEMS[n][1],
            "gold_answer": PROBLEMS[n][2],
            "n_steps": PROBLEMS[n][3],
            "source": "hand",
            "source_id": n,
        }
        for n in names
    ]


def baseline_rows(names):
    return [
        {"problem_id": PID[n], "condition_id": 0, "method": "baseline", "correct": True, "logp_gold": -1.0}
        for n in names
    ]


def decoding_rows(names, tokens):
    rows = []
    for (layer, position), by_problem in tokens.items():
        for n in names:
            for rank, text in enumerate(by_problem[n], 1):
                rows.append(
                    {
                        "problem_id": PID[n],
                        "layer": layer,
                        "position": position,
                        "rank": rank,
                        "token_id": 1000 + rank,
                        "token_text": text,
                        "prob": PROBS[rank - 1],
                    }
                )
    return rows


def question_rows(names):
    return [
        {"problem_id": PID[n], "token_pos": i, "token_id": 100 + i, "token_text": text, "number": number}
        for n in names
        for i, (text, number) in enumerate(QUESTION[n])
    ]


def attention_rows(names):
    return [
        {
            "problem_id": PID[n],
            "layer": layer,
            "head": head,
            "dst": dst,
            "token_pos": i,
            "weight": head_weight(mean, head, i),
        }
        for n in names
        for layer in LAYERS
        for dst in DSTS
        for i, mean in enumerate(head_means(n, layer, dst))
        for head in HEADS
    ]


def insert_probes(store, run_id: str, probe_set: str, created: dt.datetime, probes) -> None:
    cols = ("target", "step", "position", "layer", "score", "chance", "p_value")
    table = pa.table(
        {
            **{c: [p[i] for p in probes] for i, c in enumerate(cols)},
            "run_id": [run_id] * len(probes),
            "probe_set": [probe_set] * len(probes),
            "estimator": ["ridge" if p[0] == "value" else "logistic" for p in probes],
            "metric": ["r2" if p[0] == "value" else "accuracy" for p in probes],
            "ci_low": [p[4] - 0.1 for p in probes],
            "ci_high": [p[4] + 0.1 for p in probes],
            "shuffled": [p[5] + 0.01 for p in probes],
            "shuffled_high": [p[5] + 0.05 for p in probes],
            "p_analytic": [p[6] for p in probes],  # what the views Holm-adjust
            "n": [40] * len(probes),
            "folds": [5] * len(probes),
            "permutations": [999] * len(probes),
            "settings": [json.dumps({"set": probe_set})] * len(probes),
            "created_at": [created] * len(probes),
        }
    )
    with store.cursor() as con:
        con.register("incoming_probes", table)
        con.execute("INSERT INTO probe_results BY NAME SELECT * FROM incoming_probes")


def build(path) -> str:
    """Write runs R and F into a new warehouse at `path`; returns its path."""
    store = wh.open_warehouse(path, durable=False)
    run = store.begin_run({"hand": "R"}, run_id=RUN_R, model_name="gpt2-tiny", n_layers=2, n_heads=2)
    store.append_problems(
        run,
        problem_rows(NAMES),
        baseline_rows(NAMES),
        readouts={
            "decoding": decoding_rows(NAMES, TOKENS),
            "question_tokens": question_rows(NAMES),
            "token_attention": attention_rows(NAMES),
        },
    )
    store.finish_run(run)
    insert_probes(store, RUN_R, "old", dt.datetime(2024, 1, 1), [OLD_PROBE])
    insert_probes(store, RUN_R, "new", dt.datetime(2024, 2, 1), PROBES)

    failed = ["R1", "R2"]
    hits = {  # every target at every rank: a view reading run F would count hits
        key: {n: [f" {v:g}" for v in [*STEPS[n], PROBLEMS[n][2]][:3]] for n in failed} for key in TOKENS
    }
    for by_problem in hits.values():
        for n in failed:
            by_problem[n] = (by_problem[n] + WORDS)[:3]
    run = store.begin_run({"hand": "F"}, run_id=RUN_F, model_name="gpt2-tiny", n_layers=2, n_heads=2)
    store.append_problems(
        run,
        problem_rows(failed),
        baseline_rows(failed),
        readouts={
            "decoding": decoding_rows(failed, hits),
            "question_tokens": question_rows(failed),
            "token_attention": attention_rows(failed),
        },
    )
    store.finish_run(run, status="failed", error="stopped by hand")
    insert_probes(store, RUN_F, "failed-set", dt.datetime(2024, 3, 1), PROBES)
    store.close()
    return str(path)
