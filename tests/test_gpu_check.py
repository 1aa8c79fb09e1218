"""scripts/gpu_check.sh, the GPU readiness check, run end to end on CPU at tiny sizes: every step runs and
reports, the benchmark reports are saved, and a machine without CUDA is told so in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OMP_NUM_THREADS", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "gpu_check"
    done = gpu_check("--device", "cpu", "--out", str(out), "--no-device-tests")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert summary["failed"] == [] and summary["device"] == "cpu"
    assert summary["threads"]["wait_policy"] == "passive" and summary["threads"]["before_torch"]
    reference = steps["reference"]
    assert reference["status"] == "passed" and reference["answers_equal"] == reference["rows"] == 2 * 31
    assert max(reference["max_abs_diff"][c] for c in ("kl_first", "kl_answer", "kl_max")) <= 1e-4
    assert steps["bf16"]["status"] == "passed" and steps["bf16"]["answers_equal_share"] >= 0.9
    assert steps["syncs"]["forward_passes"] > 0 and steps["syncs"]["syncs"] is None  # none on CPU
    assert steps["devices"]["status"] == "skipped: --no-device-tests"
    bench = steps["bench engine gpt2-tiny fp32"]
    assert bench["status"] == "passed" and bench["speedup_vs_batched_peer"] > 0
    assert "python cli.py bench engine --model gpt2-tiny --device cpu --dtype fp32" in done.stdout
    saved = json.loads((out / "bench_engine_gpt2-tiny_fp32.json").read_text())
    assert saved["model"] == "gpt2-tiny" and saved["dtype"] == "float32"
    assert saved["paths"]["engine"]["problems"] == 2
    for arch in ("gpt2-124m", "llama-1b"):
        assert steps[f"bench engine {arch}"] == {"status": "skipped: not in --archs"}
    warehouse = json.loads((out / "bench_warehouse.json").read_text())
    assert steps["bench warehouse"]["run_batch"] == warehouse["run_batch"]["rows_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so():
    done = gpu_check()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no CUDA device is available here; use --device cpu to check the script itself"
    ]
    bad = gpu_check("--device", "cpu", "--archs", "gpt5")
    assert bad.returncode == 2 and "--archs: unknown gpt5" in bad.stderr
