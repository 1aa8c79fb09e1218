"""Threads that do not spin: torch's CPU thread count and OpenMP wait policy, chosen before torch loads.

torch's CPU kernels run on libgomp, the OpenMP runtime it bundles (torch/lib/libgomp.so.1). Between
parallel regions libgomp's worker threads spin (busy-wait, GOMP_SPINCOUNT 300,000 turns by default)
before they sleep; on a machine other processes use too (a shared Slurm node, the normal case), the
spinning threads hold the cores the working ones need: a run phase took 129-137 s by default and 15-16 s
with OMP_WAIT_POLICY=PASSIVE at load 9 on 2 cores. libgomp reads OMP_WAIT_POLICY and OMP_NUM_THREADS
once, when it is loaded, and it is loaded by the first `import torch`: set later, they change nothing
(`OMP_DISPLAY_ENV=VERBOSE` shows GOMP_SPINCOUNT '0' only when PASSIVE was set before the import;
docs/DESIGN.md, "Threads"). So `setup_threads` runs before anything imports torch: cli.py calls it first
in `run`, `eval` and `bench engine`. This module imports no torch at module level.

- wait policy: PASSIVE, unless OMP_WAIT_POLICY is set already (the user's choice stands);
- threads: `threads` when given (`--threads N`), else OMP_NUM_THREADS when set, else the free cores: the
  cores this process may use (its CPU affinity, at most one per physical core, at most a cgroup CPU
  quota) less the CPU time other processes take on them, measured from /proc/stat over 0.2 s; at least 1.

From Python (a notebook) torch may be loaded already: the wait policy can no longer change and is left
alone (a thread count given is still applied, with torch.set_num_threads). Whatever the path, every run
records what torch actually runs with (`in_effect`: runs.threads, runs.wait_policy), never in its config.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

WAIT_ENV = "OMP_WAIT_POLICY"
THREADS_ENV = "OMP_NUM_THREADS"
SAMPLE_S = 0.2  # how long /proc/stat is watched for the other processes' load

# set by setup_threads when it ran before torch loaded: the wait policy libgomp then read
_chosen_before_torch: str | None = None


def torch_loaded() -> bool:
    return "torch" in sys.modules


def _policy(value: str | None) -> str:
    """An OMP_WAIT_POLICY value as libgomp takes it: passive, active, or default (unset or invalid: spin
    GOMP_SPINCOUNT turns, then sleep)."""
    value = (value or "").strip().lower()
    return value if value in ("passive", "active") else "default"


def _startup_env(name: str) -> str | None:
    """`name` in the environment this process was started with (Linux), not as changed since; None when
    unset, or unknown off Linux (then os.environ is all there is)."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return os.environ.get(name)
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key.decode(errors="replace") == name:
            return value.decode(errors="replace")
    return None


def wait_policy() -> str:
    """The wait policy torch's OpenMP threads run with: passive, active, default, or unknown.

    Certain when `setup_threads` ran before torch loaded; otherwise libgomp read the environment at the
    first `import torch`: the value the process started with, unless something changed OMP_WAIT_POLICY
    since (then whether before or after torch loaded cannot be told: unknown).
    """
    if _chosen_before_torch is not None:
        return _chosen_before_torch
    now = os.environ.get(WAIT_ENV)
    if torch_loaded() and now != _startup_env(WAIT_ENV):
        return "unknown"
    return _policy(now)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """cpu number -> (busy, total) jiffies from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        times[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return times


def _usable_cores(cpus: set[int]) -> float:
    """The cores `cpus` amount to: one per physical core among them, at most a cgroup CPU quota."""
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                (
                    (topology / "physical_package_id").read_text().strip(),
                    (topology / "core_id").read_text().strip(),
                )
            )
        except OSError:
            cores.add(("cpu", str(cpu)))
    usable: float = len(cores)
    quota = _cgroup_quota()
    return min(usable, quota) if quota is not None else usable


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 cpu.max, v1 cfs_quota_us), None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def free_cores(sample_s: float = SAMPLE_S) -> dict[str, Any]:
    """The cores free for this process now: {"free": at least 1, "cores": usable, "busy": others' load}.

    `busy` is the CPU time other processes took on this process's CPUs over `sample_s` seconds (per
    /proc/stat, less this process's own), in cores; off Linux, the 1-minute load average scaled to the
    share of the machine's CPUs this process may use.
    """
    cpus = _affinity()
    cores = _usable_cores(cpus)
    own = os.times()
    try:
        before, start = _cpu_times(), time.perf_counter()
        time.sleep(sample_s)
        after, elapsed = _cpu_times(), time.perf_counter() - start
        mine = os.times()
        busy = sum(
            (after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1)
            for c in cpus
            if c in before and c in after
        )
        busy -= ((mine.user - own.user) + (mine.system - own.system)) / elapsed
    except (OSError, ValueError, IndexError):
        busy = os.getloadavg()[0] * len(cpus) / (os.cpu_count() or len(cpus))
    busy = max(busy, 0.0)
    free = max(1, min(math.floor(cores), math.floor(cores - busy + 0.5)))
    return {"free": free, "cores": cores, "busy": round(busy, 2)}


def setup_threads(threads: int | None = None) -> dict[str, Any]:
    """Choose torch's wait policy and thread count; call it before torch is imported (cli.py does).

    `threads`: the thread count asked for (`--threads N`), else OMP_NUM_THREADS, else the free cores.
    Returns what was chosen: threads, from (flag, OMP_NUM_THREADS, free cores, or torch: loaded already
    and nothing asked), wait_policy, and before_torch (False: torch had loaded; the wait policy is what it
    was, see `wait_policy`).
    """
    global _chosen_before_torch
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if torch_loaded():  # a notebook: the wait policy is fixed; a thread count can still be set
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        return {
            "threads": torch.get_num_threads(),
            "from": "flag" if threads is not None else "torch",
            "wait_policy": wait_policy(),
            "before_torch": False,
        }
    if WAIT_ENV not in os.environ:
        os.environ[WAIT_ENV] = "PASSIVE"
    _chosen_before_torch = _policy(os.environ[WAIT_ENV])
    given = os.environ.get(THREADS_ENV, "").split(",")[0].strip()  # "4" or a nested "4,2"
    if threads is not None:
        source = "flag"
        os.environ[THREADS_ENV] = str(threads)
    elif given.isdigit() and int(given) >= 1:  # the user's setting stands, as libgomp reads it
        threads, source = int(given), THREADS_ENV
    else:  # unset (or a value libgomp would ignore)
        threads, source = free_cores()["free"], "free cores"
        os.environ[THREADS_ENV] = str(threads)
    return {"threads": threads, "from": source, "wait_policy": _chosen_before_torch, "before_torch": True}


def in_effect() -> dict[str, Any]:
    """What torch runs with now: {"threads": torch.get_num_threads(), "wait_policy": wait_policy()}."""
    import torch

    return {"threads": torch.get_num_threads(), "wait_policy": wait_policy()}
