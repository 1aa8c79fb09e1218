"""Peers (issue 19): the same experiment as `run_chunk`, written the ways a user would, for `bench engine`.

    seed_loop.py  run_seed_loop: the seed research code's way: one condition at a time, batch of one,
                  plain transformers calls, a hook on block L, attention from a separate pass
    batched.py    run_batched_peer: a careful plain-transformers user: per problem the baseline, then
                  all its conditions as one batch with a row-indexed hook, attention in the same pass
    common.py     what both share with the engine by definition: replacement values, measures, answer
                  rules, the result columns; and the key groups of an attention row

Each returns a PeerOutput whose `results` and `attention` have `run_chunk(...)`'s columns and keys, so
tests hold the engine to them row for row. Neither uses the engine's loop, staged cache, speculative
answers or row assembly. Imports engine.interventions and engine.model; engine.runs imports it.
"""

from __future__ import annotations

from warehouse.lazy import exports

_EXPORTS = {
    "PeerOutput": "engine.peers.common",
    "run_seed_loop": "engine.peers.seed_loop",
    "run_batched_peer": "engine.peers.batched",
}

__getattr__, __dir__, __all__ = exports(__name__, _EXPORTS)
del exports
