"""`python cli.py eval`: a model's accuracy on held-out problems, and with its thoughts zeroed."""

from __future__ import annotations

import time

from engine.interventions.ablation import accuracy_with_thoughts_zeroed
from engine.model.checkpoints import load_model
from engine.model.evaluate import evaluate_model
from engine.runs.plan import sampled_problems
from engine.runs.validate import fit_context
from ingest.datasets import SYNTHETIC, check_sample, load_problems


def run_eval(
    model_name: str = "gpt2-tiny",
    checkpoint: str | None = None,
    dataset: str = "synthetic",
    problems: int = 400,
    seed: int = 0,
    device: str = "cpu",
    teacher: bool = True,
    sample: str = "first",
    sample_seed: int = 0,
    skip_invalid: bool = False,
) -> dict:
    """`python cli.py eval`: load a model, answer held-out problems, report accuracies.

    A file or built-in split (gsm8k-test, gsm8k-train) is sampled as `run` samples it (`sample`,
    `sample_seed`; its first `problems` by default, all when it holds fewer). Every problem is checked
    against the model's context first: a too-long one is refused in one line, or passed over (and
    replaced by the next of the sample's order) with `skip_invalid`.
    """
    started = time.time()
    model = load_model(model_name, checkpoint=checkpoint, device=device)
    skipped: list = []
    if dataset == SYNTHETIC:
        check_sample(sample, sample_seed, dataset)
        chosen = load_problems(dataset, problems, seed)
        chosen, skipped = fit_context(  # model.answer's 32 tokens; one line, no forward pass yet
            model, chosen, 32, dataset, skip_invalid=skip_invalid
        )
    else:
        chosen, skipped = sampled_problems(
            model, dataset, problems, sample, sample_seed, skip_invalid, max_new_tokens=32, cap=True
        )
    result = evaluate_model(model, chosen, teacher=teacher)
    result["accuracy_all_thoughts_zeroed"] = accuracy_with_thoughts_zeroed(model, chosen)
    return {
        **result,
        "model": model_name,
        "weights_sha256": model.info.weights_sha256,
        "dataset": dataset,
        **({"sample": sample, "sample_seed": sample_seed} if sample != "first" else {}),
        **({"skipped_too_long": len(skipped)} if skipped else {}),
        "seconds": round(time.time() - started, 2),
    }
