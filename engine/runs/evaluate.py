"""`python cli.py eval`: a model's accuracy on held-out problems, and with its thoughts zeroed."""

from __future__ import annotations

import time

from engine.interventions.ablation import accuracy_with_thoughts_zeroed
from engine.model.checkpoints import load_model
from engine.model.evaluate import evaluate_model
from engine.runs.validate import fit_context
from ingest.datasets import load_problems


def run_eval(
    model_name: str = "gpt2-tiny",
    checkpoint: str | None = None,
    dataset: str = "synthetic",
    problems: int = 400,
    seed: int = 0,
    device: str = "cpu",
    teacher: bool = True,
) -> dict:
    """`python cli.py eval`: load a model, answer held-out problems, report accuracies."""
    started = time.time()
    model = load_model(model_name, checkpoint=checkpoint, device=device)
    chosen = load_problems(dataset, problems, seed)
    fit_context(
        model, chosen, 32, dataset, skip_invalid=False
    )  # model.answer's 32 tokens; one line, no forward pass yet
    result = evaluate_model(model, chosen, teacher=teacher)
    result["accuracy_all_thoughts_zeroed"] = accuracy_with_thoughts_zeroed(model, chosen)
    return {
        **result,
        "model": model_name,
        "weights_sha256": model.info.weights_sha256,
        "dataset": dataset,
        "seconds": round(time.time() - started, 2),
    }
