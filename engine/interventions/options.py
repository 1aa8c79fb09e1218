"""What one chunk of problems runs: the patch layers, the conditions, the seed and what to record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.interventions.conditions import Condition


@dataclass
class EngineOptions:
    """`conditions` start with the baseline (conditions.build_conditions); `layers` are the layers whose clean
    sites are recorded (the run's patch layers), by default those the conditions patch."""

    layers: tuple[int, ...] = ()
    conditions: tuple[Condition, ...] = ()
    seed: int = 0
    attention: str = "all"  # all | baseline | none
    noise_scale: str = "absolute"  # absolute | rms
    max_new_tokens: int = 24

    def __post_init__(self) -> None:
        self.conditions = tuple(self.conditions)
        self.layers = tuple(self.layers or sorted({c.layer for c in self.conditions if c.layer is not None}))
