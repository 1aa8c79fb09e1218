"""Device and dtype handling, on every device this machine has (CPU here; CUDA too where there is one:
scripts/gpu_check.py runs this file there). Nothing in the engine may put a tensor on another device than
the model's, and a model in bf16 or fp16 must still give float32 sites and the same (float) measurement
columns as in float32.

CUDA-only code paths, each with the CPU twin that the suite runs (grep -n cuda engine/ cli.py):
- engine/runs/plan.py pick_device: `auto` picks CUDA when present (twin: CPU otherwise, every test here);
  `--device cuda` without CUDA is refused (tests/test_faults_inputs.py).
- engine/model/checkpoints.py finalize: device `auto` -> cuda when present, else cpu (the same choice).
- engine/runs/bench.py: torch.cuda.synchronize() around each timing on CUDA (twin: no sync on CPU; the
  timed code is the same; tests/test_views_bench.py and `bench engine` on CPU).
- engine/runs/ray.py: a GPU per task when the Ray cluster has GPUs, else CPU cores split between the
  workers (tests/test_distributed.py runs the CPU branch).
"""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from engine.interventions.chunk import build_plan, run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.interventions.patching import decoder_blocks
from engine.interventions.rows import _result_schema
from engine.model.checkpoints import load_model
from engine.runs.local import donor_sites
from engine.runs.plan import pick_device, resolve_dtype
from ingest.datasets import synthetic_problems

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PROBLEMS = synthetic_problems(2, seed=5)


def _opts(model) -> EngineOptions:
    """Every kind of replacement value (zero, noise, a donor problem's, a mean over the pool), attention
    captured; 8 answer tokens are enough for what is checked here."""
    layer = model.n_layers // 2
    conditions = tuple(build_conditions([layer], ("zero", "gauss", "random", "mean"), (0.1,)))
    return EngineOptions((layer,), conditions, 0, "all", max_new_tokens=8)


@pytest.mark.parametrize("device", DEVICES)
def test_every_tensor_the_engine_makes_is_on_the_models_device(device):
    model = load_model("gpt2-tiny", device=device)
    opts = _opts(model)
    seen: list[tuple[str, torch.device]] = []

    def check_inputs(module, args, kwargs):
        for value in [*args, *kwargs.values()]:
            if isinstance(value, torch.Tensor) and value.device != model.device:
                seen.append((type(module).__name__, value.device))

    watched = [model.codi, model.prj, *decoder_blocks(model.codi)]  # the LM, the projection, each block
    handles = [m.register_forward_pre_hook(check_inputs, with_kwargs=True) for m in watched]
    try:
        pool = donor_sites(model, PROBLEMS, opts, ("random", "mean"))
        out = run_chunk(model, PROBLEMS, opts, pool)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == []  # every tensor they were given, on every forward pass
    assert {t.device for t in [*pool.values(), *out.sites.values()]} == {model.device}
    sites = torch.stack([out.sites[p.problem_id] for p in PROBLEMS])
    plan, _ = build_plan(PROBLEMS, list(opts.conditions[1:]), sites, pool, opts)
    assert {t.device for rows, values in plan.entries.values() for t in (rows, values)} == {model.device}
    assert out.results.height == len(PROBLEMS) * len(opts.conditions)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["bf16", pytest.param("fp16", marks=pytest.mark.slow)])  # fp16: slow on CPU
def test_a_half_precision_model_gives_float32_sites_and_the_same_columns(device, dtype):
    model = load_model("gpt2-tiny", device=device, dtype=resolve_dtype(dtype))
    assert next(model.parameters()).dtype == resolve_dtype(dtype)
    opts = _opts(model)
    pool = donor_sites(model, PROBLEMS, opts, ("random", "mean"))
    out = run_chunk(model, PROBLEMS, opts, pool)
    assert {t.dtype for t in [*pool.values(), *out.sites.values()]} == {torch.float32}
    assert dict(out.results.schema) == _result_schema()  # the float32 run's columns, Float64 measures
    assert out.attention is not None and out.attention.schema.field("weight").type == pa.float32()
    for column in ("kl_answer", "kl_max", "js_answer", "logp_gold", "entropy_answer"):
        values = out.results[column].drop_nulls()
        assert values.len() > 0 and values.is_finite().all(), column
    sites = torch.stack([out.sites[p.problem_id] for p in PROBLEMS])
    plan, _ = build_plan(PROBLEMS, list(opts.conditions[1:]), sites, pool, opts)
    # replacement values stay float32 until the patch hook casts them (docs/DESIGN.md, "Precision")
    assert {values.dtype for _, values in plan.entries.values()} == {torch.float32}


def test_pick_device_and_dtype():
    assert pick_device("cpu") == ("cpu", torch.float32)
    assert pick_device("cpu", "auto") == ("cpu", torch.float32)  # auto is float32, on CUDA too
    assert pick_device("cpu", "bf16") == ("cpu", torch.bfloat16)
    assert pick_device("cpu", "fp16") == ("cpu", torch.float16)
    assert pick_device("auto")[0] == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="^--dtype must be auto, fp32, bf16 or fp16, got 'fp8'$"):
        pick_device("cpu", "fp8")
