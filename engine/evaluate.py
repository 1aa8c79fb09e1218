"""Student (latent) and teacher (explicit CoT) accuracy, overall and by step count."""
from __future__ import annotations

from collections import defaultdict

import torch

from engine.answers import is_correct, parse_answer
from engine.model import CodiModel


def _accuracy(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else float("nan")


def _get(record, key):
    return record[key] if isinstance(record, dict) else getattr(record, key)


@torch.no_grad()
def evaluate_model(model: CodiModel, records: list, batch_size: int = 64, teacher: bool = True) -> dict:
    """records: Problems, or dicts with `question`, `gold` (or synthetic `values`) and `n_steps`."""
    student, teach = defaultdict(list), defaultdict(list)
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        questions = [_get(r, "question") for r in chunk]
        golds = [r["values"][-1] if isinstance(r, dict) and "values" in r else _get(r, "gold") for r in chunk]
        steps = [_get(r, "n_steps") for r in chunk]
        for k, g, text in zip(steps, golds, model.answer(questions)):
            student[k].append(is_correct(parse_answer(text), g))
        if teacher:
            for k, g, text in zip(steps, golds, model.teacher_answer(questions)):
                teach[k].append(is_correct(parse_answer(text), g))
    result = {"n": len(records),
              "accuracy": _accuracy([f for v in student.values() for f in v]),
              "by_steps": {str(k): _accuracy(v) for k, v in sorted(student.items())}}
    if teacher:
        result["teacher_accuracy"] = _accuracy([f for v in teach.values() for f in v])
        result["teacher_by_steps"] = {str(k): _accuracy(v) for k, v in sorted(teach.items())}
    return result


def run_eval(model_name: str = "gpt2-tiny", checkpoint: str | None = None, dataset: str = "synthetic",
             problems: int = 400, seed: int = 0, device: str = "cpu", teacher: bool = True) -> dict:
    """`python cli.py eval`: load a model, answer held-out problems, report accuracies."""
    import time

    from engine.checkpoints import load_model
    from ingest.datasets import load_problems

    started = time.time()
    model = load_model(model_name, checkpoint=checkpoint, device=device)
    result = evaluate_model(model, load_problems(dataset, problems, seed), teacher=teacher)
    return {**result, "model": model_name, "weights_sha256": model.info.weights_sha256,
            "dataset": dataset, "seconds": round(time.time() - started, 2)}
