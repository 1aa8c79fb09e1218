"""Runs (SPEC 6, 12, 13): a RunConfig planned, executed and streamed into the warehouse.

    config.py     RunConfig (what to run) and Execution (how), both keyword-only
    plan.py       device, problems (stratified), layers, conditions and the run's config and hash inputs
    validate.py   problems checked against the model's context before the first forward pass
    local.py      one process: chunks computed while a writer thread commits the previous one; resume
    resume.py     --resume: the run's stored config, flags given beside it checked against it
    sharded.py    `--shard I/N`: one worker's slice, as a portable shard or committed directly
    ray.py        `--executor ray`: the shards as Ray tasks, merged at the end
    executors.py  execute (the CLI's `run`) and run_experiment (the same from Python, returning the Run)
    evaluate.py   `eval`: accuracy on held-out problems, and with the thoughts zeroed
    bench.py      `bench engine`: the batched engine against its peers (engine/peers/), interleaved
    threads.py    torch's thread count and OpenMP wait policy (PASSIVE), chosen before torch loads
    flops.py      FLOPs of a path, counted from the forward calls it makes
    memory.py     a chunk's memory, term by term, before it runs; `--max-memory` picks the batch size

Imports engine.peers, engine.interventions and engine.model. Names are imported on first use.
"""

from __future__ import annotations

from warehouse.lazy import exports

_EXPORTS = {
    "RunConfig": "engine.runs.config",
    "Execution": "engine.runs.config",
    "EXECUTORS": "engine.runs.config",
    "RunPlan": "engine.runs.plan",
    "plan_run": "engine.runs.plan",
    "select_problems": "engine.runs.plan",
    "stratified": "engine.runs.plan",
    "fit_context": "engine.runs.validate",
    "builtin_datasets": "engine.runs.validate",
    "sampled_problems": "engine.runs.plan",
    "execute_run": "engine.runs.local",
    "RunFailed": "engine.runs.local",
    "RunInterrupted": "engine.runs.local",
    "resumed_config": "engine.runs.resume",
    "ResumeConflict": "engine.runs.resume",
    "run_shard": "engine.runs.sharded",
    "run_ray": "engine.runs.ray",
    "execute": "engine.runs.executors",
    "run_experiment": "engine.runs.executors",
    "run_eval": "engine.runs.evaluate",
    "bench_engine": "engine.runs.bench",
    "setup_threads": "engine.runs.threads",
    "bench_engine_lines": "engine.runs.bench",
    "estimate_chunk_memory": "engine.runs.memory",
    "estimate_run_memory": "engine.runs.memory",
    "fit_batch_size": "engine.runs.memory",
    "MemoryEstimate": "engine.runs.memory",
    "ModelShape": "engine.runs.memory",
    "parse_size": "engine.runs.memory",
}

__getattr__, __dir__, __all__ = exports(__name__, _EXPORTS)
del exports
