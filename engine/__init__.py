"""The engine: CODI models, the interventions run on them, and the runs that store their rows.

    engine.model          the CODI model: loading, its latent loop, answers, training, evaluation
    engine.interventions  conditions as data, the corruption methods, the batched engine and its rows
    engine.peers          the same experiment written the ways a user would (seed loop, batched plain
                          transformers): reference implementations that `bench engine` times against
    engine.runs           run orchestration: config, planning, local / sharded / Ray execution, bench

Inside the engine, runs may import peers, interventions and model, peers may import interventions and
model, interventions may import model, and model imports none of them. The names below are the public
API, imported on first use (importing `engine` does not import torch):

    from engine import RunConfig, run_experiment
    run = run_experiment(RunConfig(problems=8, methods="zero,gauss"), "results/warehouse")
    run.view("token_importance")
"""

from __future__ import annotations

from warehouse.lazy import exports

_EXPORTS = {  # name -> the module that defines it
    "CodiModel": "engine.model.codi",
    "ModelInfo": "engine.model.codi",
    "load_model": "engine.model.checkpoints",
    "parse_answer": "engine.model.answers",
    "is_correct": "engine.model.answers",
    "TrainConfig": "engine.model.train",
    "train": "engine.model.train",
    "evaluate_model": "engine.model.evaluate",
    "Condition": "engine.interventions.conditions",
    "build_conditions": "engine.interventions.conditions",
    "METHODS": "engine.interventions.methods",
    "register": "engine.interventions.methods",
    "replacement": "engine.interventions.methods",
    "EngineOptions": "engine.interventions.options",
    "run_chunk": "engine.interventions.chunk",
    "run_reference": "engine.interventions.reference",
    "ChunkOutput": "engine.interventions.rows",
    "RunConfig": "engine.runs.config",
    "Execution": "engine.runs.config",
    "execute": "engine.runs.executors",
    "run_experiment": "engine.runs.executors",
    "execute_run": "engine.runs.local",
    "RunInterrupted": "engine.runs.local",
    "resumed_config": "engine.runs.resume",
    "ResumeConflict": "engine.runs.resume",
    "run_eval": "engine.runs.evaluate",
    "builtin_datasets": "engine.runs.validate",
    "bench_engine": "engine.runs.bench",
    "setup_threads": "engine.runs.threads",
    "threads_in_effect": "engine.runs.threads:in_effect",
    "bench_engine_lines": "engine.runs.bench",
    "run_seed_loop": "engine.peers.seed_loop",
    "run_batched_peer": "engine.peers.batched",
    "estimate_chunk_memory": "engine.runs.memory",
    "estimate_run_memory": "engine.runs.memory",
    "MemoryEstimate": "engine.runs.memory",
    "ModelShape": "engine.runs.memory",
    "parse_size": "engine.runs.memory",
}

__getattr__, __dir__, __all__ = exports(__name__, _EXPORTS)
del exports
