"""The patch site (SPEC 3): the output of decoder block L at thought Tk, only during step k.

A `PatchPlan` holds, for each (layer, step), which batch rows to overwrite and with what. Forward
hooks on the decoder blocks apply it to the single new position of the current step; nothing is
patched during the question pass, at EOT or while decoding (the plan's step is None then).

The clean value at a site is read by a hook on the same block (`recording`), never from
`hidden_states[L + 1]`: for the last block transformers puts the output of the final LayerNorm
there, not the block's output, and writing that normed value back where the raw output belongs
would corrupt every method at the last layer (the `clean` control changed 21 of 288 answers).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


def decoder_blocks(lm: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a GPT-2 or LLaMA causal LM (block L's output; see `recording`)."""
    base = getattr(lm, "base_model", lm)
    for path in ("transformer.h", "model.layers", "h", "layers"):
        module = base
        try:
            for attr in path.split("."):
                module = getattr(module, attr)
        except AttributeError:
            continue
        if isinstance(module, nn.ModuleList):
            return module
    raise TypeError(f"cannot find the decoder blocks of {type(lm).__name__}")


@dataclass
class PatchPlan:
    """rows/values per (layer, step); `step` is the thought step being computed, else None."""

    entries: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    step: int | None = None

    @property
    def layers(self) -> set[int]:
        return {layer for layer, _ in self.entries}

    def add(self, layer: int, step: int, rows: torch.Tensor, values: torch.Tensor) -> None:
        self.entries[(layer, step)] = (rows, values)

    def remap(self, position: torch.Tensor) -> PatchPlan:
        """The same plan for a batch whose row `position[r]` holds what was row r."""
        return PatchPlan({key: (position[rows], values) for key, (rows, values) in self.entries.items()})


def _hook_for(plan: PatchPlan, layer: int):
    def hook(_module, _args, output):
        if plan.step is None or (layer, plan.step) not in plan.entries:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        rows, values = plan.entries[(layer, plan.step)]
        hidden = hidden.clone()
        hidden[rows, -1, :] = values.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


@contextmanager
def patched(lm: nn.Module, plan: PatchPlan):
    """Install hooks for every layer the plan touches; always removed on exit.

    Prepended: transformers 5 records `hidden_states` with its own forward hooks on the blocks,
    installed lazily on the first call; a patch hook that ran after them would leave
    `hidden_states[L+1]` showing the value from before the patch.
    """
    blocks = decoder_blocks(lm)
    handles = [
        blocks[layer].register_forward_hook(_hook_for(plan, layer), prepend=True)
        for layer in sorted(plan.layers)
    ]
    try:
        yield plan
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recording(lm: nn.Module, layers):
    """Record block L's output at the newest position on every forward pass, for each L in `layers`.

    Yields a dict layer -> the last recorded value [B, d]; appended after any patch hooks, so it
    holds what the block hands on (for baseline rows, the clean value).
    """
    blocks = decoder_blocks(lm)
    seen: dict[int, torch.Tensor] = {}

    def hook_for(layer: int):
        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            seen[layer] = hidden[:, -1, :].detach()

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in sorted(set(layers or ()))]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()
