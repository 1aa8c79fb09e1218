"""GPU readiness: what to run first on a CUDA machine, in under 8 minutes (scripts/gpu_check.sh).

    scripts/gpu_check.sh                    # CUDA: every check, the benchmarks of three model sizes
    scripts/gpu_check.sh --device cpu       # the same script on CPU at tiny sizes (tests/test_gpu_check.py)

Steps, each reported (and saved to OUT/summary.json) whatever the others do:

1. reference   the batched engine (run_chunk) against the one-condition-at-a-time reference
               (run_reference) on gpt2-tiny in float32: every answer equal, KL within 1e-4 nats.
2. bf16        bf16 against float32 on the same problems: share of answers equal (>= 90% passes; on CPU
               it is 96.6% on the default problems, tests/test_bf16.py), |delta kl_answer| median and max.
3. syncs       host-device synchronizations during one run_chunk (torch.cuda.set_sync_debug_mode("warn"),
               each warning counted), per forward pass of the model: each decoded token is one forward
               pass. CPU: none to count (the forward passes are still counted).
4. devices     tests/test_devices.py under pytest: on CUDA its cases run on the GPU too.
5. bench       `python cli.py bench engine --json` for gpt2-tiny, --arch gpt2-124m and --arch llama-1b,
               in fp32 and bf16 (CPU: gpt2-tiny in fp32 at 2 problems unless --archs says more); each
               report saved as OUT/bench_engine_<model>_<dtype>.json.
6. warehouse   `python cli.py bench warehouse --json` (writer rows/s), saved as OUT/bench_warehouse.json.

A step that would start after --budget seconds is skipped (and said so); a command past its share of the
time is stopped. Exit status 1 when a check fails or a command fails, else 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ARCHS = ("gpt2-tiny", "gpt2-124m", "llama-1b")
KL_TOLERANCE = 1e-4  # batched against reference, float32
BF16_AGREEMENT = 0.9  # share of answers bf16 and float32 must agree on
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (tiny sizes)")
    parser.add_argument("--out", default=None, help="results folder [results/gpu_check/<UTC time>]")
    parser.add_argument("--problems", type=int, default=None, help="problems per check [cuda 8, cpu 2]")
    parser.add_argument(
        "--archs", default=None, help="comma list of gpt2-tiny,gpt2-124m,llama-1b [cuda: all; cpu: gpt2-tiny]"
    )
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all steps [450]")
    parser.add_argument("--no-device-tests", action="store_true", help="skip step 4 (pytest)")
    args = parser.parse_args(argv)
    if args.device not in ("cuda", "cpu"):
        parser.error(f"--device must be cuda or cpu, got {args.device!r}")
    archs = (args.archs or (",".join(ARCHS) if args.device == "cuda" else "gpt2-tiny")).split(",")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        parser.error(f"--archs: unknown {', '.join(unknown)}; known: {', '.join(ARCHS)}")
    args.archs = archs
    args.problems = args.problems or (8 if args.device == "cuda" else 2)
    if args.problems < 2:
        parser.error("--problems must be at least 2 (the shuffle and donor methods need two)")
    return args


class Steps:
    """Runs the steps in order under a time budget, recording each one's outcome."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.results: dict[str, Any] = {}
        self.failed: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, fn: Callable[[], dict]) -> None:
        if self.left() <= 0:
            self.results[name] = {"status": "skipped: out of time"}
            print(f"[{name}] skipped: the time budget is spent", flush=True)
            return
        started = time.monotonic()
        print(f"[{name}] ...", flush=True)
        try:
            found = fn()
        except Exception as exc:  # a check that crashes is a failed check, and the others still run
            found = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"}
        found["seconds"] = round(time.monotonic() - started, 1)
        self.results[name] = found
        if found.get("status") == "failed":
            self.failed.append(name)
        print(f"[{name}] {json.dumps(found, default=str)}", flush=True)


def _setup(problems: int) -> tuple[list, Callable[[Any], Any]]:
    """`problems` synthetic problems, and the options for a model: every condition of four methods (two
    sigmas) at its middle layer, attention captured."""
    from engine import EngineOptions, build_conditions
    from ingest import synthetic_problems

    chosen = synthetic_problems(problems, seed=3)

    def opts(model: Any) -> EngineOptions:
        layer = model.n_layers // 2
        conditions = tuple(build_conditions([layer], ("zero", "gauss", "shuffle", "clean"), (0.1, 1.0)))
        return EngineOptions((layer,), conditions, 0, "all")

    return chosen, opts


def check_reference(device: str, problems: int) -> dict:
    """Batched engine == sequential reference on `device` (float32)."""
    from engine import load_model, run_chunk, run_reference

    chosen, opts = _setup(problems)
    model = load_model("gpt2-tiny", device=device)
    keys = ["problem_id", "condition_id"]
    pair = (
        run_chunk(model, chosen, opts(model))
        .results.join(run_reference(model, chosen, opts(model)).results, on=keys, suffix="_ref")
        .sort(keys)
    )
    same = int((pair["answer_text"] == pair["answer_text_ref"]).sum())
    worst = {
        column: float((pair[column] - pair[f"{column}_ref"]).abs().max() or 0.0)
        for column in ("kl_first", "kl_answer", "kl_max", "js_answer", "logp_gold")
        if pair[column].dtype.is_float()
    }
    ok = same == pair.height and max(worst[c] for c in ("kl_first", "kl_answer", "kl_max")) <= KL_TOLERANCE
    return {
        "status": "passed" if ok else "failed",
        "rows": pair.height,
        "answers_equal": same,
        "max_abs_diff": worst,
        "kl_tolerance": KL_TOLERANCE,
    }


def check_bf16(device: str, problems: int) -> dict:
    """bf16 against float32 on `device`: answers equal, |delta kl_answer|."""
    import torch

    from engine import load_model, run_chunk

    chosen, opts = _setup(problems)
    frames = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load_model("gpt2-tiny", device=device, dtype=dtype)
        frames[dtype] = run_chunk(model, chosen, opts(model)).results
    keys = ["problem_id", "condition_id"]
    pair = frames[torch.float32].join(frames[torch.bfloat16], on=keys, suffix="_bf16")
    share = float((pair["answer_text"] == pair["answer_text_bf16"]).mean() or 0.0)
    kl = (pair["kl_answer"] - pair["kl_answer_bf16"]).abs().drop_nulls()
    return {
        "status": "passed" if share >= BF16_AGREEMENT else "failed",
        "rows": pair.height,
        "answers_equal_share": round(share, 4),
        "kl_answer_abs_diff_median": float(kl.median() or 0.0),
        "kl_answer_abs_diff_max": float(kl.max() or 0.0),
    }


def count_syncs(device: str, problems: int) -> dict:
    """Host-device synchronizations during one run_chunk, per forward pass (a decoded token is one)."""
    import torch

    from engine import load_model, run_chunk

    chosen, opts = _setup(problems)
    model = load_model("gpt2-tiny", device=device)
    run_chunk(model, chosen, opts(model))  # warm-up: one-time costs are not counted
    forwards = [0]

    def count(*_args: Any) -> None:
        forwards[0] += 1

    handle = model.codi.register_forward_pre_hook(count)
    cuda = device.startswith("cuda")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("warn")
            try:
                run_chunk(model, chosen, opts(model))
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(0)
    finally:
        handle.remove()
    found: dict[str, Any] = {"status": "measured", "forward_passes": forwards[0]}
    if not cuda:
        return {**found, "syncs": None, "note": "CPU: there is no host-device synchronization to count"}
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    found.update(syncs=syncs, syncs_per_forward_pass=round(syncs / max(forwards[0], 1), 2))
    try:  # a second count: the CUDA runtime's synchronizing calls, as the profiler records them
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run_chunk(model, chosen, opts(model))
        calls = [e.name for e in prof.events() if e.name in SYNC_CALLS]
        found["profiler_sync_calls"] = {name: calls.count(name) for name in sorted(set(calls))}
    except Exception as exc:  # the count above stands without it
        found["profiler_sync_calls"] = f"not measured: {type(exc).__name__}: {exc}"
    return found


def run_command(command: list[str], timeout: float, save: Path | None = None) -> dict:
    """A `python cli.py ...` command: shown, run, its JSON output saved to `save`."""
    shown = " ".join(["python", *command[1:]])
    print(f"  $ {shown}", flush=True)
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=max(timeout, 1), env=os.environ.copy()
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "command": shown, "error": f"timed out after {round(timeout)} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"status": "failed", "command": shown, "error": last}
    report = json.loads(done.stdout)
    if save is not None:
        save.write_text(json.dumps(report, indent=2) + "\n")
    return {"status": "passed", "command": shown, "report": report, "saved": str(save) if save else None}


def bench_engine(device: str, arch: str, dtype: str, out: Path, quick: bool, timeout: float) -> dict:
    model = ["--model", arch] if arch == "gpt2-tiny" else ["--arch", arch]
    sizes = ["--problems", "2", "--seed-problems", "1", "--rounds", "3", "--batch-size", "2"]
    sizes += ["--attention", "none"]
    command = [sys.executable, "cli.py", "bench", "engine", *model, "--device", device, "--dtype", dtype]
    found = run_command(
        [*command, *(sizes if quick else []), "--json"], timeout, out / f"bench_engine_{arch}_{dtype}.json"
    )
    report = found.pop("report", None)
    if report:  # the headline figures; the whole report is in the saved file
        found.update(
            {
                "engine_wall_s_per_problem": report["paths"]["engine"]["wall_s_per_problem"]["median"],
                "engine_problems_per_s": round(
                    1 / report["paths"]["engine"]["wall_s_per_problem"]["median"], 4
                ),
                "engine_of_peak": report["paths"]["engine"]["of_peak"],
                "speedup_vs_batched_peer": report["engine_speedup"]["batched_peer"]["wall_median"],
                "speedup_vs_seed_loop": report["engine_speedup"]["seed_loop"]["wall_median"],
                "threads": report.get("torch_threads"),
            }
        )
    return found


def bench_warehouse(out: Path, quick: bool, timeout: float) -> dict:
    sizes = ["--problems", "1", "--no-durable"] if quick else []
    command = [sys.executable, "cli.py", "bench", "warehouse", *sizes, "--json"]
    found = run_command(command, timeout, out / "bench_warehouse.json")
    report = found.pop("report", None)
    if report:
        found.update(
            {
                key: report[key]["rows_per_s"]
                for key in ("problem_transactions", "chunk_transactions", "run_batch", "scan_attention")
                if isinstance(report.get(key), dict)
            }
        )
    return found


def device_tests(timeout: float) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_devices.py"]
    shown = " ".join(["python", *command[1:]])
    print(f"  $ {shown}", flush=True)
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"status": "failed", "command": shown, "error": f"timed out after {round(timeout)} s"}
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"status": "passed" if done.returncode == 0 else "failed", "command": shown, "pytest": last}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from engine import setup_threads

    threads = setup_threads()  # before torch loads: PASSIVE, the free cores
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device is available here; use --device cpu to check the script itself",
            file=sys.stderr,
        )
        return 2
    quick = args.device == "cpu"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO / "results" / "gpu_check" / stamp
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(args.budget)
    header = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": threads,
        "problems": args.problems,
        "started": stamp,
    }
    print(json.dumps(header), flush=True)
    steps.run("reference", lambda: check_reference(args.device, args.problems))
    steps.run("bf16", lambda: check_bf16(args.device, args.problems))
    steps.run("syncs", lambda: count_syncs(args.device, args.problems))
    if args.no_device_tests:
        steps.results["devices"] = {"status": "skipped: --no-device-tests"}
    else:
        steps.run("devices", lambda: device_tests(min(steps.left(), 180)))
    dtypes = ("fp32",) if quick else ("fp32", "bf16")
    benches = [(arch, dtype) for arch in args.archs for dtype in dtypes]
    for i, (arch, dtype) in enumerate(benches):
        share = steps.left() / (len(benches) - i + 1)  # this one's share; the warehouse bench still to come
        steps.run(
            f"bench engine {arch} {dtype}",
            functools.partial(bench_engine, args.device, arch, dtype, out, quick, share),
        )
    for arch in ARCHS:
        if arch not in args.archs:
            steps.results[f"bench engine {arch}"] = {"status": "skipped: not in --archs"}
    steps.run("bench warehouse", lambda: bench_warehouse(out, quick, steps.left()))
    summary = {**header, "steps": steps.results, "failed": steps.failed, "out": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"summary: {out / 'summary.json'}")
    print("failed: " + (", ".join(steps.failed) if steps.failed else "none"))
    return 1 if steps.failed else 0


if __name__ == "__main__":
    sys.exit(main())
