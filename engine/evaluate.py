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


def _gold(record) -> float:
    """A Problem's gold answer, or the last running value of a raw synthetic record."""
    return record["values"][-1] if isinstance(record, dict) and "values" in record else _get(record, "gold")


@torch.no_grad()
def evaluate_model(model: CodiModel, records: list, batch_size: int = 64, teacher: bool = True) -> dict:
    """records: Problems, or dicts with `question`, `gold` (or synthetic `values`) and `n_steps`."""
    student, teach = defaultdict(list), defaultdict(list)
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        questions = [_get(r, "question") for r in chunk]
        golds = [_gold(r) for r in chunk]
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


@torch.no_grad()
def accuracy_with_thoughts_zeroed(model: CodiModel, records: list, layer: int | None = None,
                                  batch_size: int = 64) -> float:
    """Student accuracy when the output of block `layer` is zeroed at all six thoughts at once.

    A model that really reasons in its thoughts loses most of its accuracy here.
    """
    from engine.loop import run_rows, start_questions
    from engine.patching import PatchPlan
    from engine.positions import N_THOUGHTS

    layer = model.n_layers // 2 if layer is None else layer
    flags = []
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        rows = torch.arange(len(chunk), device=model.device)
        zeros = torch.zeros(len(chunk), model.codi.config.hidden_size, device=model.device)
        plan = PatchPlan()
        for k in range(N_THOUGHTS):
            plan.add(layer, k, rows, zeros)
        _, state, z = start_questions(model, [_get(r, "question") for r in chunk])
        no_gold = torch.full((len(chunk), 1), model.pad_id, device=model.device)
        texts = run_rows(model, state, z, plan, None, no_gold, False, None, 32).texts
        golds = [_gold(r) for r in chunk]
        flags += [is_correct(parse_answer(t), g) for t, g in zip(texts, golds)]
    return _accuracy(flags)


def run_eval(model_name: str = "gpt2-tiny", checkpoint: str | None = None, dataset: str = "synthetic",
             problems: int = 400, seed: int = 0, device: str = "cpu", teacher: bool = True) -> dict:
    """`python cli.py eval`: load a model, answer held-out problems, report accuracies."""
    import time

    from engine.checkpoints import load_model
    from engine.validate import fit_context
    from ingest.datasets import load_problems

    started = time.time()
    model = load_model(model_name, checkpoint=checkpoint, device=device)
    chosen = load_problems(dataset, problems, seed)
    fit_context(model, chosen, 32, dataset, skip_invalid=False)  # model.answer's 32 tokens; one line, no forward pass yet
    result = evaluate_model(model, chosen, teacher=teacher)
    result["accuracy_all_thoughts_zeroed"] = accuracy_with_thoughts_zeroed(model, chosen)
    return {**result, "model": model_name, "weights_sha256": model.info.weights_sha256,
            "dataset": dataset, "seconds": round(time.time() - started, 2)}
