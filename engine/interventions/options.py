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
    attention: str = "all"  # all | baseline | none | tokens (all, plus the baseline's per question token)
    noise_scale: str = "absolute"  # absolute | rms
    max_new_tokens: int = 24
    n_heads: int | None = None  # the model's attention heads: head ablation slices the projection's input
    # sites to record beyond those the conditions write to (site -> layers): the donor pool's baseline-only
    # pass records what the run's conditions will take from it (engine/runs/local.py donor_sites)
    extra_sites: dict[str, tuple[int, ...]] | None = None
    # readouts of the baseline rows (engine/interventions/readouts.py): keep every layer's state at T0..T5
    # and EOT (`states`), and the logit lens's top `decode_top` tokens of each (0: no decoding)
    states: bool = False
    decode_top: int = 0

    def __post_init__(self) -> None:
        self.conditions = tuple(self.conditions)
        self.layers = tuple(
            self.layers
            or sorted(
                {
                    p.layer
                    for c in self.conditions
                    for p in c.parts
                    if p.site == "block" and p.layer is not None
                }
            )
        )

    @property
    def condition_attention(self) -> bool:
        """Whether the condition rows' attention is kept (not only the baseline's)."""
        return self.attention in ("all", "tokens")

    @property
    def reads_states(self) -> bool:
        """Whether the baseline pass records every layer's state (to store or to decode)."""
        return self.states or self.decode_top > 0

    @property
    def recorded(self) -> dict[str, tuple[int, ...]]:
        """The sites other than block outputs whose clean values the baseline records (site -> layers): those
        the conditions write to (attn, mlp, head); edges write no value."""
        found: dict[str, set[int]] = {site: set(layers) for site, layers in (self.extra_sites or {}).items()}
        for condition in self.conditions:
            for part in condition.parts:
                if part.site in ("attn", "mlp", "head") and part.layer is not None:
                    found.setdefault(part.site, set()).add(part.layer)
        return {site: tuple(sorted(layers)) for site, layers in sorted(found.items())}
