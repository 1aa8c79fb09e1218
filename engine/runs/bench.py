"""`python cli.py bench engine`: the batched engine against two peers, interleaved in one process.

The peers (engine/peers/) compute the same rows as the engine, the ways a user would without it:
- seed loop: the seed research code's way, one condition at a time, batch of one, plain transformers
  calls, attention from a separate pass (`--seed-problems` of the problems; it is slow);
- batched peer: per problem the baseline, then all its conditions as one batch with a row-indexed hook
  and attention in the same pass (what a careful plain-transformers or nnsight user writes).
The sequential reference (engine/interventions/reference.py) is no longer timed: it runs the engine's own
loop and row assembly one row at a time, so it is not a peer a user would write; the seed loop is.

After a warm-up (each path once on the first problem, with the baseline and one condition per thought),
each of `rounds` rounds runs engine, seed loop and batched peer in turn on the same problems, on the same
model, with the same donor pool (computed once, untimed). Reported per path: wall time
(`time.perf_counter`) and CPU time (`time.process_time`, every thread of the process) per problem, min and
median over rounds; the engine's speed-up over each peer (peer time / engine time per problem); the load
average before and after each round; torch's thread count and OMP_WAIT_POLICY; and FLOPs: counted
analytically from what each path feeds the model (engine/runs/flops.py, exact against torch's
FlopCounterMode), achieved GFLOP/s at the best round, and that as a fraction of the machine's matmul
peak, measured in the same process (the best of several timed square `torch.mm`, fp32, and in the model's
dtype when that differs). With `arch` the model is architecture-only (engine.model.arch): real size,
random weights, no checkpoint needed.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from engine.interventions.chunk import run_chunk, site_pool
from engine.interventions.conditions import build_conditions, parse_families
from engine.interventions.options import EngineOptions
from engine.model.arch import build_arch_model
from engine.model.checkpoints import load_model
from engine.model.codi import CodiModel
from engine.peers import batched, seed_loop
from engine.runs.config import RunConfig
from engine.runs.flops import counting
from engine.runs.local import donor_sites
from engine.runs.plan import pick_device, select_layers, select_problems

PATHS = ("engine", "seed_loop", "batched_peer")
LABELS = {"engine": "engine", "seed_loop": "seed loop", "batched_peer": "batched peer"}
FLOPS_COUNTED = (
    "analytic, from the forward calls each path makes (engine/runs/flops.py): 2 x matmul weights of the "
    "decoder blocks per position fed, + 2 x output-layer weights per position it is applied to, + 4 x "
    "layers x heads x head_dim per query-key pair scored, + 2 x prj matmul weights per row projected; "
    "biases, norms, softmax left out; equal to "
    "torch's FlopCounterMode on gpt2-tiny (tests/test_peers.py)"
)


def bench_engine(
    model_name: str = "gpt2-tiny",
    checkpoint: str | None = None,
    problems: int = 8,
    seed_problems: int = 2,
    rounds: int = 3,
    batch_size: int = 8,
    device: str = "auto",
    attention: str = "all",
    arch: str | None = None,
    dtype: str = "auto",
    families: str | None = None,
    readouts: bool = False,
) -> dict:
    """Engine, seed loop and batched peer, interleaved over `rounds` rounds (see the module doc).

    `families` (a comma list, as `run --family`): the engine is also timed on each family's conditions
    alone (with the baseline), interleaved with the classic `thoughts` family in the same rounds; reported
    as conditions per second per family (`families` in the report). The peers run the classic family only.
    `readouts`: the engine is also timed, in the same rounds, with each readout a run can keep (READOUTS:
    the logit lens's top 5, the states, the question-token attention, all three), reported per option as
    seconds per problem and the median over rounds of its time / the plain engine's in that round.

    `problems`: for the engine and the batched peer; `seed_problems`: the first of them, for the seed loop.
    `batch_size`: problems per engine chunk; `dtype`: as `--dtype` (auto: float32).
    `arch` (gpt2-124m, llama-1b): random weights of that shape.
    """
    if rounds < 3:
        raise ValueError(f"--rounds must be at least 3 (min and median need a few), got {rounds}; raise it")
    if not 1 <= seed_problems <= problems:
        raise ValueError(
            f"--seed-problems must be between 1 and --problems ({problems}), got {seed_problems}; "
            "lower it or raise --problems"
        )
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
    family_opts = _family_options(model, layers, attention, families)
    readout_opts = (
        {name: dataclasses.replace(opts, **change) for name, change in READOUTS.items()} if readouts else {}
    )
    union = EngineOptions(
        layers,
        (conditions[0], *(c for o in family_opts.values() for c in o.conditions[1:])),
        0,
        attention,
        n_heads=model.n_heads,
    )
    methods = [p.method for c in union.conditions for p in c.parts] + [c.method for c in conditions]
    pool = donor_sites(model, chosen, union if family_opts else opts, methods)

    classic = site_pool(pool, "block")  # the peers run the classic family: block outputs only

    def engine(ps: list, o: EngineOptions) -> None:
        for i in range(0, len(ps), batch_size):
            run_chunk(model, ps[i : i + batch_size], o, pool)

    paths: dict[str, tuple[list, Callable[[list, EngineOptions], object]]] = {
        "engine": (chosen, engine),
        "seed_loop": (chosen[:seed_problems], lambda ps, o: seed_loop.run_seed_loop(model, ps, o, classic)),
        "batched_peer": (chosen, lambda ps, o: batched.run_batched_peer(model, ps, o, classic)),
    }
    first = {c.thought: c for c in reversed(conditions[1:]) if c.thought is not None}  # first on each thought
    warm = EngineOptions(layers, (conditions[0], *(first[k] for k in sorted(first))), 0, attention)
    for ps, run in paths.values():
        run(ps[:1], warm)
    peaks = {"float32": matmul_peak(device, torch.float32)}
    if torch_dtype != torch.float32:
        peaks[_name(torch_dtype)] = matmul_peak(device, torch_dtype)

    times: dict[str, list[tuple[float, float]]] = {name: [] for name in PATHS}
    flops: dict[str, int] = {}
    calls: dict[str, int] = {}
    load = []
    family_times: dict[str, list[float]] = {}
    readout_times: dict[str, list[float]] = {}
    for r in range(rounds):
        before = os.getloadavg()[0]
        for name in PATHS:
            ps, run = paths[name]
            with counting(model) as count:
                times[name].append(_timed(partial(run, ps, opts), device))
            flops[name], calls[name] = count.flops, count.calls
        for family, family_o in family_opts.items():  # the same round: families beside the classic one
            family_times.setdefault(family, []).append(_timed(partial(engine, chosen, family_o), device)[0])
        for name, readout_o in readout_opts.items():  # the same round: the plain engine's is times["engine"]
            readout_times.setdefault(name, []).append(_timed(partial(engine, chosen, readout_o), device)[0])
        load.append({"round": r + 1, "before": round(before, 2), "after": round(os.getloadavg()[0], 2)})

    peak = peaks[_name(torch_dtype)]["gflops"]
    per_problem = {  # path -> clock -> stat -> seconds per problem
        name: {
            clock: {
                "min": min(t[i] for t in times[name]) / len(paths[name][0]),
                "median": statistics.median(t[i] for t in times[name]) / len(paths[name][0]),
            }
            for i, clock in enumerate(("wall", "cpu"))
        }
        for name in PATHS
    }
    report_paths = {}
    for name in PATHS:
        n, seconds = len(paths[name][0]), per_problem[name]
        gflops = flops[name] / 1e9 / (seconds["wall"]["min"] * n)
        report_paths[name] = {
            "problems": n,
            "wall_s_per_problem": {stat: _sig(v) for stat, v in seconds["wall"].items()},
            "cpu_s_per_problem": {stat: _sig(v) for stat, v in seconds["cpu"].items()},
            "rounds": [{"wall_s": _sig(w), "cpu_s": _sig(c)} for w, c in times[name]],
            "conditions_per_s": _sig(len(conditions) / seconds["wall"]["median"]),
            "gflop_per_problem": _sig(flops[name] / 1e9 / n),
            "forward_calls_per_problem": _sig(calls[name] / n),
            "gflops": _sig(gflops),
            "of_peak": _sig(gflops / peak),
            "skipped": list(_skipped(name)),
        }
    speedup = {
        name: {
            f"{clock}_{stat}": _sig(per_problem[name][clock][stat] / per_problem["engine"][clock][stat])
            for clock in ("wall", "cpu")
            for stat in ("median", "min")
        }
        for name in PATHS[1:]
    }
    return {
        "model": model_name,
        "arch": arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": device,
        "dtype": _name(torch_dtype),
        "conditions_per_problem": len(conditions),
        "attention": attention,
        "batch_size": batch_size,
        "rounds": rounds,
        "paths": report_paths,
        "engine_speedup": speedup,
        "load_average": load,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "matmul_peak": peaks,
        "flops_counted": FLOPS_COUNTED,
        "families": {
            family: {
                "conditions_per_problem": len(o.conditions) - 1,
                "wall_s_per_problem": _sig(statistics.median(family_times[family]) / len(chosen)),
                "conditions_per_s": _sig(
                    (len(o.conditions) - 1) * len(chosen) / statistics.median(family_times[family])
                ),
            }
            for family, o in family_opts.items()
        },
        "readouts": {
            name: {
                "wall_s_per_problem": _sig(statistics.median(readout_times[name]) / len(chosen)),
                "vs_plain": _sig(
                    statistics.median(
                        t / plain[0] for t, plain in zip(readout_times[name], times["engine"], strict=True)
                    )
                ),
            }
            for name in readout_opts
        },
    }


# `bench engine --readouts`: what each readout option changes in the engine's options
READOUTS: dict[str, dict] = {
    "decode_top_5": {"decode_top": 5},
    "states": {"states": True},
    "attention_tokens": {"attention": "tokens"},
    "all_three": {"decode_top": 5, "states": True, "attention": "tokens"},
}


def _family_options(
    model: CodiModel, layers: tuple[int, ...], attention: str, spec: str | None
) -> dict[str, EngineOptions]:
    """family -> the engine's options for that family's conditions alone (the baseline first), the classic
    `thoughts` family first; empty when no families are asked for."""
    if not spec:
        return {}
    chosen = parse_families(spec)
    everything = build_conditions(
        list(layers), families=("thoughts", *chosen), n_layers=model.n_layers, n_heads=model.n_heads
    )
    out = {}
    for family in dict.fromkeys(("thoughts", *chosen)):
        picked = [c for c in everything if c.is_baseline or c.family == family]
        if family == "thoughts":  # the classic 42 only, not the singles pairs add under their methods
            picked = build_conditions(list(layers))
        out[family] = EngineOptions(layers, tuple(picked), 0, attention, n_heads=model.n_heads)
    return out


def _skipped(name: str) -> tuple[str, ...]:
    return {"engine": (), "seed_loop": seed_loop.SKIPPED, "batched_peer": batched.SKIPPED}[name]


def matmul_peak(device: str, dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> dict:
    """The best of `repeats` timed n x n `torch.mm` in `dtype` on `device` (after one untimed), in GFLOP/s."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = min(_timed(lambda: torch.mm(a, b), device)[0] for _ in range(repeats + 1))
    return {"n": n, "repeats": repeats, "seconds": _sig(best), "gflops": _sig(2 * n**3 / best / 1e9)}


def _timed(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process) of fn()."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _sig(value: float) -> float:
    """Four significant digits: real-size models on CPU take seconds to minutes per problem."""
    return float(f"{value:.4g}")


def bench_engine_lines(report: dict) -> list[str]:
    """The plain-text table of a `bench_engine` report."""
    peak_dtype = report["dtype"]
    lines = [
        f"{report['model']} on {report['device']} ({report['dtype']}), {report['conditions_per_problem']} "
        f"conditions/problem, attention={report['attention']}, {report['rounds']} rounds",
        f"{'path':<13} {'problems':>8} {'wall s/problem':>16} {'CPU s/problem':>16} {'GFLOP/problem':>13} "
        f"{'GFLOP/s':>8} {'of peak':>7}",
        f"{'':<13} {'':>8} {'min':>7} {'median':>8} {'min':>7} {'median':>8}",
    ]
    for name in PATHS:
        p = report["paths"][name]
        wall, cpu = p["wall_s_per_problem"], p["cpu_s_per_problem"]
        lines.append(
            f"{LABELS[name]:<13} {p['problems']:>8} {wall['min']:>7.4g} {wall['median']:>8.4g} "
            f"{cpu['min']:>7.4g} {cpu['median']:>8.4g} {p['gflop_per_problem']:>13.4g} "
            f"{p['gflops']:>8.4g} {p['of_peak']:>7.1%}"
        )
    for name in PATHS[1:]:
        s = report["engine_speedup"][name]
        lines.append(
            f"engine vs {LABELS[name]}: {s['wall_median']:.3g}x wall, {s['cpu_median']:.3g}x CPU (medians; "
            f"mins {s['wall_min']:.3g}x, {s['cpu_min']:.3g}x)"
        )
    skipped = {LABELS[n]: report["paths"][n]["skipped"] for n in PATHS[1:]}
    lines.append(
        "peers skip: "
        + "; ".join(f"{label}: {', '.join(s) if s else 'nothing'}" for label, s in skipped.items())
    )
    families = report.get("families") or {}
    if families:
        lines.append(
            "engine per intervention family (conditions alone with the baseline; peers: thoughts only):"
        )
        for family, f in families.items():
            lines.append(
                f"  {family:<11} {f['conditions_per_problem']:>5} conditions/problem  "
                f"{f['wall_s_per_problem']:>8.4g} s/problem  {f['conditions_per_s']:>8.4g} conditions/s"
            )
    readouts = report.get("readouts") or {}
    if readouts:
        lines.append(
            "engine with readouts (same rounds; x = median over rounds of time / the plain engine's):"
        )
        for name, r in readouts.items():
            lines.append(f"  {name:<17} {r['wall_s_per_problem']:>8.4g} s/problem  {r['vs_plain']:>6.3g}x")
    load = ", ".join(f"{r['before']}->{r['after']}" for r in report["load_average"])
    lines.append(f"load average (1 min) before->after each round: {load}")
    peak = report["matmul_peak"][peak_dtype]
    fp32 = report["matmul_peak"]["float32"]
    peak_text = f"{fp32['gflops']:.4g} GFLOP/s fp32"
    if peak_dtype != "float32":
        peak_text += f", {peak['gflops']:.4g} GFLOP/s {peak_dtype} (the 'of peak' column)"
    lines.append(
        f"matmul peak: {peak_text} (torch.mm {fp32['n']}x{fp32['n']}, best of {fp32['repeats']}); "
        f"torch threads {report['torch_threads']}, OMP_WAIT_POLICY={report['omp_wait_policy'] or 'unset'}"
    )
    return lines
