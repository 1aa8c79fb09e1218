"""Interventions (SPEC 3, 4, 5): conditions as data, the corruption methods, and the engine that runs them.

    conditions.py  Condition, the condition list of a run, per-condition seeds, the donor pool
    methods.py     METHODS: the corruption methods (zero, gauss, random, shuffle, clean, mean), one
                   function each, and `replacement`, which looks a condition's method up
    options.py     EngineOptions: what a chunk runs (layers, conditions, seed, attention, noise scale)
    patching.py    the patch site: overwrite block L's output at thought Tk during step k only
    loop.py        the CODI loop for a set of rows, with what every measurement needs
    kvcache.py     a KV cache that appends in place and lets rows join mid-loop
    staged.py      all condition rows as one batch, joining the baseline's cache at their thought
    measures.py    KL, JS, entropy, attention disruption
    rows.py        a chunk's result rows (polars) and attention rows (Arrow)
    chunk.py       run_chunk: every condition of a batch of problems (the batched engine)
    reference.py   run_reference: the same, one condition at a time (the research code's way)
    ablation.py    accuracy with every thought zeroed (eval's check)

Imports engine.model, never engine.runs. Names are imported on first use.
"""

from __future__ import annotations

from warehouse.lazy import exports

_EXPORTS = {
    "Condition": "engine.interventions.conditions",
    "build_conditions": "engine.interventions.conditions",
    "parse_methods": "engine.interventions.conditions",
    "parse_sigmas": "engine.interventions.conditions",
    "select_donor_pool": "engine.interventions.conditions",
    "METHODS": "engine.interventions.methods",
    "Method": "engine.interventions.methods",
    "Site": "engine.interventions.methods",
    "Replacement": "engine.interventions.methods",
    "register": "engine.interventions.methods",
    "pool_methods": "engine.interventions.methods",
    "replacement": "engine.interventions.methods",
    "EngineOptions": "engine.interventions.options",
    "PatchPlan": "engine.interventions.patching",
    "ChunkOutput": "engine.interventions.rows",
    "RESULT_SCHEMA": "engine.interventions.rows",
    "run_chunk": "engine.interventions.chunk",
    "build_plan": "engine.interventions.chunk",
    "run_reference": "engine.interventions.reference",
    "accuracy_with_thoughts_zeroed": "engine.interventions.ablation",
}

__getattr__, __dir__, __all__ = exports(__name__, _EXPORTS)
del exports
