"""`python cli.py bench engine`: the batched engine against the sequential reference, same process.

Both paths run the same problems and conditions on the same model; the report gives problems/s and
conditions/s for each and their ratio. Warm-up runs first so one-time costs are not counted.
"""
from __future__ import annotations

import time

import torch

from engine.checkpoints import load_model
from engine.conditions import build_conditions
from engine.run import RunRequest, donor_sites, pick_device, select_layers, select_problems
from engine.runner import EngineOptions, run_chunk, run_reference


def bench_engine(model_name: str = "gpt2-tiny", checkpoint: str | None = None, problems: int = 16,
                 reference_problems: int = 2, batch_size: int = 8, device: str = "auto",
                 attention: str = "all") -> dict:
    device, dtype = pick_device(device)
    model = load_model(model_name, checkpoint=checkpoint, device=device, dtype=dtype)
    req = RunRequest(model=model_name, problems=problems, attention=attention)
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

    batched_s = timed(lambda: [run_chunk(model, chosen[i:i + batch_size], opts, pool)
                               for i in range(0, len(chosen), batch_size)])
    ref_set = chosen[:reference_problems]
    reference_s = timed(lambda: run_reference(model, ref_set, opts, pool))
    batched_pps = len(chosen) / batched_s
    reference_pps = len(ref_set) / reference_s
    return {
        "model": model_name, "device": device, "dtype": str(dtype).removeprefix("torch."),
        "conditions_per_problem": len(conditions), "attention": attention, "batch_size": batch_size,
        "batched": {"problems": len(chosen), "seconds": round(batched_s, 3), "problems_per_s": round(batched_pps, 3),
                    "conditions_per_s": round(batched_pps * len(conditions), 1)},
        "sequential": {"problems": len(ref_set), "seconds": round(reference_s, 3),
                       "problems_per_s": round(reference_pps, 3),
                       "conditions_per_s": round(reference_pps * len(conditions), 1)},
        "ratio": round(batched_pps / reference_pps, 2),
        "threads": torch.get_num_threads(),
    }
