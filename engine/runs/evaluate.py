"""`python cli.py eval`: a model's accuracy on held-out problems, and with its thoughts zeroed."""

from __future__ import annotations

import time

from engine.interventions.ablation import accuracy_with_thoughts_zeroed
from engine.model.checkpoints import load_model
from engine.model.evaluate import evaluate_model
from engine.runs import threads
from engine.runs.plan import dtype_name, pick_device, sampled_problems
from engine.runs.validate import fit_context
from ingest.datasets import SYNTHETIC, check_sample, load_problems

# What the bundled model is (issue 18 item 4), said with any evaluation of it on real problems, so that a
# near-zero accuracy there is not read as a fault of the engine or of the file.
BUNDLED_NOTE = (
    "gpt2-tiny (the bundled model) is trained on synthetic problems only; it is not a GSM8K model"
    "{measured}, so expect near-zero accuracy on real text"
)
# Its measured accuracy on the GSM8K test split (README.md, "The bundled model on real text").
BUNDLED_GSM8K_TEST: str | None = "1.9% (21/1,107; 212 too long for its context skipped)"


def bundled_note(model_name: str, checkpoint: str | None, dataset: str) -> str | None:
    """The note an evaluation of the bundled gpt2-tiny on a non-synthetic dataset carries; None else."""
    if model_name != "gpt2-tiny" or checkpoint is not None or dataset == SYNTHETIC:
        return None
    measured = f" (on GSM8K test it answers {BUNDLED_GSM8K_TEST})" if BUNDLED_GSM8K_TEST else ""
    return BUNDLED_NOTE.format(measured=measured)


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
    dtype: str = "auto",
) -> dict:
    """`python cli.py eval`: load a model, answer held-out problems, report accuracies.

    A file or built-in split (gsm8k-test, gsm8k-train) is sampled as `run` samples it (`sample`,
    `sample_seed`; its first `problems` by default, all when it holds fewer). Every problem is checked
    against the model's context first: a too-long one is refused in one line, or passed over (and
    replaced by the next of the sample's order) with `skip_invalid`; the result counts them
    (`skipped_too_long`). `note` is a line to show with the result (the bundled model on real problems),
    None when there is nothing to say. `dtype`: as `--dtype` (auto: float32); the result names it, and
    the threads and OpenMP wait policy torch ran with (engine/runs/threads.py).
    """
    started = time.time()
    device, torch_dtype = pick_device(device, dtype)
    model = load_model(model_name, checkpoint=checkpoint, device=device, dtype=torch_dtype)
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
        "device": device,
        "dtype": dtype_name(torch_dtype),
        **threads.in_effect(),
        **({"sample": sample, "sample_seed": sample_seed} if sample != "first" else {}),
        "skipped_too_long": len(skipped),
        "note": bundled_note(model_name, checkpoint, dataset),
        "seconds": round(time.time() - started, 2),
    }
