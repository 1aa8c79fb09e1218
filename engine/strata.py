"""Difficulty strata by step count (SPEC 7): '<=2', '3', '4', '5+'."""
from __future__ import annotations

from warehouse.vocab import STRATA, stratum_of

__all__ = ["STRATA", "stratified", "stratum_of"]


def stratified(problems: list, per_stratum: int) -> list:
    """The first `per_stratum` problems of each stratum, in input order, strata interleaved."""
    buckets = {s: [p for p in problems if stratum_of(p.n_steps) == s][:per_stratum] for s in STRATA}
    out = []
    for i in range(per_stratum):
        out.extend(buckets[s][i] for s in STRATA if i < len(buckets[s]))
    return out
