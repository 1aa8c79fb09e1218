"""Student (latent) and teacher (explicit CoT) accuracy, overall and by step count.

The `eval` command (with its thoughts-zeroed check, an intervention) is engine/runs/evaluate.py.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from engine.model.answers import is_correct, parse_answer
from engine.model.codi import CodiModel


def accuracy_of(flags: list[bool]) -> float:
    """The share of True flags, to 4 places (NaN for none)."""
    return round(sum(flags) / len(flags), 4) if flags else float("nan")


def record_field(record, key):
    """A field of a Problem or of a raw record dict."""
    return record[key] if isinstance(record, dict) else getattr(record, key)


def record_gold(record) -> float:
    """A Problem's gold answer, or the last running value of a raw synthetic record."""
    return (
        record["values"][-1]
        if isinstance(record, dict) and "values" in record
        else record_field(record, "gold")
    )


@torch.no_grad()
def evaluate_model(model: CodiModel, records: list, batch_size: int = 64, teacher: bool = True) -> dict:
    """records: Problems, or dicts with `question`, `gold` (or synthetic `values`) and `n_steps`."""
    student, teach = defaultdict(list), defaultdict(list)
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        questions = [record_field(r, "question") for r in chunk]
        golds = [record_gold(r) for r in chunk]
        steps = [record_field(r, "n_steps") for r in chunk]
        for k, g, text in zip(steps, golds, model.answer(questions), strict=True):
            student[k].append(is_correct(parse_answer(text), g))
        if teacher:
            for k, g, text in zip(steps, golds, model.teacher_answer(questions), strict=True):
                teach[k].append(is_correct(parse_answer(text), g))
    result = {
        "n": len(records),
        "accuracy": accuracy_of([f for v in student.values() for f in v]),
        "by_steps": {str(k): accuracy_of(v) for k, v in sorted(student.items())},
    }
    if teacher:
        result["teacher_accuracy"] = accuracy_of([f for v in teach.values() for f in v])
        result["teacher_by_steps"] = {str(k): accuracy_of(v) for k, v in sorted(teach.items())}
    return result
