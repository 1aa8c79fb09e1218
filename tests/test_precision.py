"""Precision as a choice, recorded (`--dtype`): the resolved dtype is part of a run's config (only when not
float32, so every float32 config and hash is what it was before --dtype), a resume keeps it and refuses
another, and the noise of `gauss` is added in float32 and rounded to the model's dtype once, in the patch
hook. The statement docs/DESIGN.md makes about bf16 and sigma-0.1 noise is checked here numerically."""

from __future__ import annotations

import json

import pytest
import torch
from faults_helpers import cli, fetch, user_error

import engine.runs.local as run_module
import warehouse as wh
from engine.interventions.conditions import Condition, draw_seed, gaussian_noise
from engine.interventions.methods import replacement
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan, _hook_for
from engine.runs.config import RunConfig
from engine.runs.local import execute_run
from engine.runs.plan import plan_run
from engine.runs.resume import ResumeConflict, resumed_config
from warehouse import lineage

# decode_top 0: no readouts, so the config is the one the pinned hash below was computed from
SMALL = {"problems": 2, "methods": "zero", "layers": "1", "attention": "none", "decode_top": 0}
# The hash of this float32 run's config as the code before --dtype computed it (commit c514fbf).
FP32_HASH_BEFORE_DTYPE = "7a83eb08f81a5c0119e5ab2982f9e14825ce2ff3b214ce74d2886a031993e538"


def test_the_config_holds_the_dtype_only_when_not_float32():
    fp32 = plan_run(RunConfig(**SMALL))
    assert "dtype" not in fp32.config and fp32.fields["dtype"] == "float32"
    assert lineage.config_hash(fp32.config) == FP32_HASH_BEFORE_DTYPE  # unchanged by --dtype
    assert lineage.config_hash(plan_run(RunConfig(**SMALL, dtype="fp32")).config) == FP32_HASH_BEFORE_DTYPE
    bf16 = plan_run(RunConfig(**SMALL, dtype="bf16"))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert bf16.config["dtype"] == bf16.fields["dtype"] == "bfloat16"
    assert {k: v for k, v in bf16.config.items() if k != "dtype"} == fp32.config
    assert lineage.config_hash(bf16.config) != FP32_HASH_BEFORE_DTYPE


def interrupted(db, monkeypatch, **kw) -> str:
    """A run stopped after its first chunk of 1 problem (of 2)."""
    real_chunk = run_module.run_chunk
    calls = {"n": 0}

    def failing_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_chunk", failing_second_chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        execute_run(RunConfig(**SMALL, batch_size=1, **kw), str(db), progress=False)
    monkeypatch.setattr(run_module, "run_chunk", real_chunk)
    return fetch(db, "SELECT run_id FROM runs")[0][0]


def test_a_resume_keeps_the_runs_dtype_and_refuses_another(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted(db, monkeypatch, dtype="bf16")
    assert resumed_config(RunConfig(resume=run_id), db).dtype == "bfloat16"
    line = user_error(cli("run", "--resume", run_id, "--dtype", "fp32", "--db", db), f"--resume {run_id}: ")
    assert "--dtype fp32 differs from the run's bfloat16; drop them or start a new run" in line
    with pytest.raises(ResumeConflict, match="--dtype fp16 differs from the run's bfloat16"):
        execute_run(RunConfig(resume=run_id, dtype="fp16"), str(db), progress=False)
    user_error(cli("run", "--resume", run_id, "--dtype", "auto", "--db", db), "--dtype auto differs")
    assert cli("run", "--resume", run_id, "--dtype", "bf16", "--db", db).exit_code == 0  # agrees
    assert fetch(db, "SELECT status, dtype, config_json->>'dtype' FROM runs") == [
        ("complete", "bfloat16", "bfloat16")
    ]
    assert fetch(db, "SELECT count(*) FROM results") == [(2 * 7,)]


def test_a_float32_run_resumes_in_float32_and_refuses_bf16(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted(db, monkeypatch)
    assert resumed_config(RunConfig(resume=run_id, device="cpu"), db).dtype == "float32"
    user_error(
        cli("run", "--resume", run_id, "--dtype", "bf16", "--db", db),
        "--dtype bf16 differs from the run's float32",
    )
    assert cli("run", "--resume", run_id, "--db", db).exit_code == 0
    assert fetch(db, "SELECT status, dtype, config_json->>'dtype' FROM runs") == [
        ("complete", "float32", None)
    ]


def test_a_bf16_run_from_before_dtype_was_in_the_config_is_not_resumed_in_float32(tmp_path):
    """CUDA runs were bfloat16 with no dtype in their config: resuming one in float32 would mix precisions,
    and in bfloat16 would change its config; refused, in one line, naming the flag for a new run."""
    store = wh.open_warehouse(tmp_path / "w")
    config = {"model": "gpt2-tiny", "methods": ["zero"], "layers": [1], "seed": 0, "problems": 2}
    run_id = store.begin_run(config, run_id="cuda-run", dtype="bfloat16", device="cuda")
    store.finish_run(run_id, "failed", "stopped")
    store.close()
    with pytest.raises(ResumeConflict) as caught:
        resumed_config(RunConfig(resume="cuda-run"), tmp_path / "w")
    assert str(caught.value) == (
        "--resume cuda-run: the run was computed in bfloat16 before a run's config recorded its precision, "
        "so it cannot be resumed without mixing precisions; start a new run (--dtype bf16 computes in "
        "bfloat16)"
    )


# --- where the noise is added, and what bf16 does to it ------------------------------------------------
def test_gauss_adds_in_float32_and_the_hook_rounds_once():
    """h (a bf16 model's clean value, exact in float32) + 0.1 e is computed in float32; the hook writes
    its one rounding to bf16, which differs from adding in bf16 (two roundings) at some coordinates."""
    torch.manual_seed(0)
    h = (torch.randn(1, 1, 512) * 20).to(torch.bfloat16)  # |h| up to ~60
    cond = Condition(1, "gauss", 3, 2, 0.1)
    opts = EngineOptions((3,), (cond,), 7)
    sites = h.float().expand(1, 6, 512).clone()
    value = replacement(cond, "p", 0, sites, {}, opts).value
    noise = gaussian_noise(draw_seed(opts.seed, "p", cond), 512)
    assert value.dtype == torch.float32 and torch.equal(value, h[0, 0].float() + 0.1 * noise)
    plan = PatchPlan({(3, 2): (torch.tensor([0]), value[None])}, step=2)
    written = _hook_for(plan, 3)(None, (), (h.clone(),))[0][0, -1]
    assert written.dtype == torch.bfloat16 and torch.equal(written, value.to(torch.bfloat16))
    in_bf16 = h[0, 0] + (0.1 * noise).to(torch.bfloat16)
    assert not torch.equal(written, in_bf16)


@pytest.mark.parametrize(
    ("low", "unchanged", "kept_sigma"),
    [  # |h| in [low, 2 low): share of coordinates bf16 leaves at h, and the noise's std left / sigma
        (4, (0.11, 0.14), (0.98, 1.03)),
        (16, (0.44, 0.50), (1.02, 1.10)),
        (32, (0.76, 0.82), (1.10, 1.20)),
        (64, (0.98, 0.995), (0.45, 0.70)),
        (128, (0.9999, 1.0), (0.0, 0.05)),
    ],
)
def test_what_bf16_leaves_of_sigma_01_noise(low, unchanged, kept_sigma):
    """docs/DESIGN.md, "Precision": bf16's spacing at |h| in [2^k, 2^(k+1)) is 2^(k-7). Below |h| = 64 the
    noise survives at about its size (often rounded to zero, otherwise to a whole spacing); from 64 nearly
    all of it, and from 128 all of it, is rounded away."""
    generator = torch.Generator().manual_seed(0)
    n = 200_000
    h = (low * (1 + torch.rand(n, generator=generator))).to(torch.bfloat16).float()
    e = torch.randn(n, generator=generator)
    patched = (h + 0.1 * e).to(torch.bfloat16).float()
    share = (patched == h).float().mean().item()
    left = (patched - h).std().item() / 0.1
    assert unchanged[0] <= share <= unchanged[1], share
    assert kept_sigma[0] <= left <= kept_sigma[1], left


def test_bench_and_eval_take_the_dtype(tmp_path):
    out = cli("eval", "--problems", 2, "--no-teacher", "--dtype", "bf16", "--json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["dtype"] == "bfloat16"
    user_error(cli("eval", "--problems", 2, "--device", "tpu"), "--device must be auto, cpu or cuda")
