"""Threads that do not spin (engine/runs/threads.py): the wait policy and thread count are chosen before torch
loads, libgomp reads them, and every run records what torch ran with (runs.threads, runs.wait_policy).

libgomp shows what it read when it loads with OMP_DISPLAY_ENV=VERBOSE: GOMP_SPINCOUNT '0' is the passive
policy, '300000' the default (spin, then sleep). Each check runs in a fresh interpreter: in this one torch
is loaded already, and that is the case `wait_policy` must report honestly, not change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import warehouse as wh
from engine.runs import threads
from engine.runs.config import RunConfig
from engine.runs.executors import run_experiment

REPO = Path(__file__).resolve().parent.parent
PASSIVE_SPIN, DEFAULT_SPIN = "GOMP_SPINCOUNT = '0'", "GOMP_SPINCOUNT = '300000'"


def fresh(code: str, **env: str | None) -> tuple[dict, str]:
    """Run `code` in a new interpreter (libgomp's view on stderr); returns the JSON object it prints (the
    whole of stdout), and stderr."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    environ.update({k: v for k, v in env.items() if v is not None}, OMP_DISPLAY_ENV="VERBOSE")
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


SETUP_THEN_TORCH = """
import json, os, sys
from engine.runs.threads import setup_threads, in_effect
chosen = setup_threads({threads})
assert "torch" not in sys.modules
import torch
torch.zeros(64, 64) @ torch.zeros(64, 64)
print(json.dumps({{"chosen": chosen, "torch_threads": torch.get_num_threads(), **in_effect(),
                  "env": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def test_setup_before_torch_makes_libgomp_passive_with_the_threads_asked():
    out, stderr = fresh(SETUP_THEN_TORCH.format(threads=1))
    assert PASSIVE_SPIN in stderr and DEFAULT_SPIN not in stderr  # what libgomp itself read at load
    assert out["env"] == "PASSIVE" and out["wait_policy"] == "passive"
    assert out["torch_threads"] == out["threads"] == 1
    assert out["chosen"] == {"threads": 1, "from": "flag", "wait_policy": "passive", "before_torch": True}


def test_without_a_flag_the_free_cores_or_omp_num_threads_decide():
    out, _ = fresh(SETUP_THEN_TORCH.format(threads=None))
    cores = len(os.sched_getaffinity(0))
    assert out["chosen"]["from"] == "free cores" and 1 <= out["torch_threads"] <= cores
    assert out["torch_threads"] == out["chosen"]["threads"]
    out, _ = fresh(SETUP_THEN_TORCH.format(threads=None), OMP_NUM_THREADS="1")
    assert out["chosen"]["from"] == "OMP_NUM_THREADS" and out["torch_threads"] == 1


def test_a_wait_policy_the_user_set_stands():
    out, stderr = fresh(SETUP_THEN_TORCH.format(threads=1), OMP_WAIT_POLICY="active")
    assert out["env"] == "active" and out["wait_policy"] == "active"
    assert PASSIVE_SPIN not in stderr and DEFAULT_SPIN not in stderr  # active: spins for good


def test_after_torch_loaded_nothing_is_pretended():
    """A notebook: torch first. The policy libgomp read is the default, and that is what is reported; an
    OMP_WAIT_POLICY set afterwards changes nothing in libgomp and is reported as unknown."""
    code = """
import json, os
import torch
from engine.runs.threads import setup_threads, in_effect
torch.set_num_threads(1)
chosen = setup_threads()
before = in_effect()
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # too late for libgomp
print(json.dumps({"chosen": chosen, "before": before, "after": in_effect()}))
"""
    out, stderr = fresh(code)
    assert DEFAULT_SPIN in stderr and PASSIVE_SPIN not in stderr
    assert out["chosen"] == {"threads": 1, "from": "torch", "wait_policy": "default", "before_torch": False}
    assert out["before"] == {"threads": 1, "wait_policy": "default"}
    assert out["after"]["wait_policy"] == "unknown"


def test_the_cli_sets_them_before_torch_loads(tmp_path):
    """`eval --threads 1` in a fresh process: libgomp read PASSIVE (so nothing imported torch before the
    command's first line), and the result says so."""
    code = (
        "import sys; from cli import cli; "
        "sys.argv = ['cli.py', 'eval', '--problems', '2', '--no-teacher', '--threads', '1', '--json']; cli()"
    )
    out, stderr = fresh(code)
    assert PASSIVE_SPIN in stderr and DEFAULT_SPIN not in stderr
    assert (out["threads"], out["wait_policy"], out["dtype"]) == (1, "passive", "float32")


def test_free_cores_is_within_the_usable_cores():
    found = threads.free_cores(0.05)
    assert 1 <= found["free"] <= max(1, int(found["cores"])) and found["busy"] >= 0
    assert found["cores"] <= len(os.sched_getaffinity(0))


def test_a_run_records_what_torch_runs_with_not_in_its_config(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = run_experiment(
            RunConfig(problems=2, methods="zero", layers="1", attention="none"),
            tmp_path / "w",
            progress=False,
        )
    finally:
        torch.set_num_threads(before)
    with wh.open_warehouse(tmp_path / "w", read_only=True).reader() as con:
        (row,) = con.execute(
            "SELECT threads, wait_policy, config_json FROM runs WHERE run_id = ?", [run.run_id]
        ).fetchall()
    assert row[:2] == (1, threads.wait_policy())
    assert row[1] in ("passive", "active", "default", "unknown")
    assert not {"threads", "wait_policy"} & json.loads(row[2]).keys()
    shown = wh.runs_show(tmp_path / "w", run.run_id)
    text = wh.format_run(shown)
    assert "threads             1\n" in text and f"wait_policy         {row[1]}\n" in text
    assert f"torch               {torch.__version__}\n" in text
