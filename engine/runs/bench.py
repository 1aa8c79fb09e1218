"""`python cli.py bench engine`: the batched engine against the sequential reference, same process.

Both paths run the same problems and conditions on the same model; the report gives problems/s and
conditions/s for each and their ratio. Warm-up runs first so one-time costs are not counted. With
`arch` the model is architecture-only (engine.model.arch): real size, random weights, no checkpoint needed.
"""

from __future__ import annotations

import time

import torch

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.interventions.reference import run_reference
from engine.model.arch import build_arch_model
from engine.model.checkpoints import load_model
from engine.runs.config import RunConfig
from engine.runs.local import donor_sites
from engine.runs.plan import pick_device, select_layers, select_problems


def bench_engine(
    model_name: str = "gpt2-tiny",
    checkpoint: str | None = None,
    problems: int = 16,
    reference_problems: int = 2,
    batch_size: int = 8,
    device: str = "auto",
    attention: str = "all",
    arch: str | None = None,
    dtype: str = "auto",
) -> dict:
    """`arch` (gpt2-124m, llama-1b): an architecture-only model of real size instead of a checkpoint;
    `dtype`: as `--dtype` (auto: float32)."""
    device, torch_dtype = pick_device(device, dtype)
    if arch is not None:
        if checkpoint is not None:
            raise ValueError("--arch builds random weights; it takes no --checkpoint")
        model, model_name = build_arch_model(arch, device, torch_dtype), arch
    else:
        model = load_model(model_name, checkpoint=checkpoint, device=device, dtype=torch_dtype)
    req = RunConfig(model=model_name, problems=problems, attention=attention)
    chosen = select_problems(req)
    layers = select_layers(model, req)
    conditions = tuple(build_conditions(list(layers)))
    opts = EngineOptions(layers, conditions, 0, attention)
    pool = donor_sites(model, chosen, opts, ("random",))
    run_chunk(model, chosen[:2], opts, pool)  # warm-up

    def timed(fn) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    batched_s = timed(
        lambda: [
            run_chunk(model, chosen[i : i + batch_size], opts, pool)
            for i in range(0, len(chosen), batch_size)
        ]
    )
    ref_set = chosen[:reference_problems]
    reference_s = timed(lambda: run_reference(model, ref_set, opts, pool))
    batched_pps = len(chosen) / batched_s
    reference_pps = len(ref_set) / reference_s
    return {
        "model": model_name,
        "arch": arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": device,
        "dtype": str(torch_dtype).removeprefix("torch."),
        "conditions_per_problem": len(conditions),
        "attention": attention,
        "batch_size": batch_size,
        "batched": {
            "problems": len(chosen),
            "seconds": round(batched_s, 3),
            "problems_per_s": _sig(batched_pps),
            "conditions_per_s": _sig(batched_pps * len(conditions)),
        },
        "sequential": {
            "problems": len(ref_set),
            "seconds": round(reference_s, 3),
            "problems_per_s": _sig(reference_pps),
            "conditions_per_s": _sig(reference_pps * len(conditions)),
        },
        "ratio": round(batched_pps / reference_pps, 2),
        "threads": torch.get_num_threads(),
    }


def _sig(rate: float) -> float:
    """Four significant digits: real-size models on CPU run at thousandths of a problem per second."""
    return float(f"{rate:.4g}")
