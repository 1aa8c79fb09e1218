"""The patch sites (SPEC 3): where a condition writes, only during the steps it names.

A `PatchPlan` holds, for each (layer, step), which batch rows to overwrite at the output of decoder
block L and with what (`entries`: the classic site), and the same for the other sites (`sites`):
- attn / mlp: the attention output or the MLP output of block L (what the block adds to the residual);
- head: one head's slice of the input to block L's attention output projection (c_proj / o_proj);
- edge: the attention from the current query to a key thought is removed (its mask entry), at block L
  or at every block (layer None).
Hooks apply a plan to the single new position of the current step: the thought steps 0..5 and EOT
(step 6: only edges name it); nothing is patched during the question pass or while decoding (the plan's
step is None then).

The clean value at a site is read by a hook on the same block (`recording`), never from
`hidden_states[L + 1]`: for the last block transformers puts the output of the final LayerNorm
there, not the block's output, and writing that normed value back where the raw output belongs
would corrupt every method at the last layer (the `clean` control changed 21 of 288 answers).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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


def attention_module(block: nn.Module) -> nn.Module:
    """The attention sub-module of a GPT-2 (`attn`) or LLaMA (`self_attn`) decoder block."""
    found = getattr(block, "attn", None) or getattr(block, "self_attn", None)
    if found is None:
        raise TypeError(f"cannot find the attention of {type(block).__name__}")
    return found


def output_projection(block: nn.Module) -> nn.Module:
    """The attention output projection (GPT-2 `attn.c_proj`, LLaMA `self_attn.o_proj`): its input is the
    heads' outputs side by side, head h in columns h*d_head .. (h+1)*d_head."""
    attention = attention_module(block)
    found = getattr(attention, "c_proj", None) or getattr(attention, "o_proj", None)
    if found is None:
        raise TypeError(f"cannot find the attention output projection of {type(block).__name__}")
    return found


SITE_MODULES = {  # site -> the module whose output (or, for head and edge, whose input) the site is
    "block": lambda block: block,
    "attn": attention_module,
    "mlp": lambda block: block.mlp,
    "head": output_projection,
    "edge": attention_module,
}


@dataclass
class PatchPlan:
    """rows/values per (layer, step) at block outputs (`entries`) and per (site, layer, step) at the other
    sites (`sites`: attn/mlp -> (rows, values); head -> (rows, columns, values); edge -> (rows, key
    thoughts), layer None meaning every layer); `step` is the step being computed (0..5, 6 = EOT), else
    None; `columns` is the batch's column map (edges turn key thoughts into key columns with it)."""

    entries: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    step: int | None = None
    sites: dict[tuple[str, int | None, int], tuple[torch.Tensor, ...]] = field(default_factory=dict)
    columns: Any = None

    @property
    def layers(self) -> set[int]:
        return {layer for layer, _ in self.entries}

    def add(self, layer: int, step: int, rows: torch.Tensor, values: torch.Tensor) -> None:
        self.entries[(layer, step)] = (rows, values)

    def add_site(
        self, site: str, layer: int | None, step: int, rows: torch.Tensor, *data: torch.Tensor
    ) -> None:
        if site == "block":
            assert layer is not None
            self.add(layer, step, rows, *data)
        else:
            self.sites[(site, layer, step)] = (rows, *data)

    def at(self, site: str, layer: int, step: int) -> tuple[torch.Tensor, ...] | None:
        """What the plan writes at (site, layer, step), or None (block outputs live in `entries`)."""
        return self.entries.get((layer, step)) if site == "block" else self.sites.get((site, layer, step))

    def hooked(self, n_layers: int) -> list[tuple[str, int]]:
        """(site, layer) pairs that need a hook, sorted."""
        pairs = {("block", layer) for layer in self.layers}
        for site, layer, _ in self.sites:
            pairs |= {(site, at) for at in range(n_layers)} if layer is None else {(site, layer)}
        return sorted(pairs)

    def remap(self, position: torch.Tensor) -> PatchPlan:
        """The same plan for a batch whose row `position[r]` holds what was row r."""
        return PatchPlan(
            {key: (position[rows], values) for key, (rows, values) in self.entries.items()},
            sites={key: (position[rows], *data) for key, (rows, *data) in self.sites.items()},
        )


def _hook_for(plan: PatchPlan, layer: int, site: str = "block"):
    """block / attn / mlp: overwrite the module's output at the new position of the planned rows."""

    def hook(_module, _args, output):
        found = None if plan.step is None else plan.at(site, layer, plan.step)
        if found is None:
            return output
        rows, values = found
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        hidden[rows, -1, :] = values.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


def _head_hook(plan: PatchPlan, layer: int):
    """head: overwrite the planned columns (a head's slice) of the output projection's input."""

    def hook(_module, args):
        found = None if plan.step is None else plan.at("head", layer, plan.step)
        if found is None:
            return None
        rows, columns, values = found
        merged = args[0].clone()
        merged[rows[:, None], -1, columns] = values.to(merged.dtype)
        return (merged, *args[1:])

    return hook


def _edge_hook(plan: PatchPlan, layer: int):
    """edge: remove the planned rows' attention to their key thought (the mask entry at that key column)
    for the new query, at this block; the mask is copied, never changed for the other blocks."""

    def hook(module, args, kwargs):
        if plan.step is None:
            return None
        found = [plan.sites.get(("edge", at, plan.step)) for at in (layer, None)]
        found = [f for f in found if f is not None]
        if not found:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        mask = kwargs.get("attention_mask")
        batch, queries = hidden.shape[:2]
        if mask is None:  # no padding and a single query: every key is visible
            cache = kwargs.get("past_key_values")
            keys = queries + (cache.get_seq_length(module.layer_idx) if cache is not None else 0)
            if queries != 1:
                raise ValueError("an edge knockout without a mask needs a single query")
            eager = module.config._attn_implementation == "eager"
            mask = torch.zeros((batch, 1, 1, keys), dtype=hidden.dtype, device=hidden.device)
            mask = mask if eager else mask == 0
        mask = mask.expand(batch, *mask.shape[1:]).clone()
        blocked = False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min
        for rows, keys in found:
            mask[rows, :, -1, plan.columns.prefix_len + keys] = blocked
        kwargs["attention_mask"] = mask
        return args, kwargs

    return hook


@contextmanager
def patched(lm: nn.Module, plan: PatchPlan):
    """Install hooks for every (site, layer) the plan touches; always removed on exit.

    Prepended: transformers 5 records `hidden_states` with its own forward hooks on the blocks,
    installed lazily on the first call; a patch hook that ran after them would leave
    `hidden_states[L+1]` showing the value from before the patch.
    """
    blocks = decoder_blocks(lm)
    handles = []
    for site, layer in plan.hooked(len(blocks)):
        module = SITE_MODULES[site](blocks[layer])
        if site == "head":
            handles.append(module.register_forward_pre_hook(_head_hook(plan, layer), prepend=True))
        elif site == "edge":
            handles.append(
                module.register_forward_pre_hook(_edge_hook(plan, layer), with_kwargs=True, prepend=True)
            )
        else:
            handles.append(module.register_forward_hook(_hook_for(plan, layer, site), prepend=True))
    try:
        yield plan
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recording(lm: nn.Module, layers, others: dict[str, tuple[int, ...]] | None = None):
    """Record block L's output at the newest position on every forward pass, for each L in `layers`, and
    the other sites' values (`others`: site -> layers; attn / mlp outputs, head: the output projection's
    input, every head side by side).

    Yields a dict layer -> the last recorded block output [B, d] (and (site, layer) -> the last value of
    each other site); appended after any patch hooks, so it holds what the module hands on (for baseline
    rows, the clean value).
    """
    blocks = decoder_blocks(lm)
    seen: dict = {}

    def hook_for(key):
        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            seen[key] = hidden[:, -1, :].detach()

        return hook

    def pre_hook_for(key):
        def hook(_module, args):  # a copy: the projection's input may be a view of a buffer used again
            seen[key] = args[0][:, -1, :].detach().clone()

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in sorted(set(layers or ()))]
    for site, site_layers in (others or {}).items():
        for layer in site_layers:
            module = SITE_MODULES[site](blocks[layer])
            if site == "head":
                handles.append(module.register_forward_pre_hook(pre_hook_for((site, layer))))
            else:
                handles.append(module.register_forward_hook(hook_for((site, layer))))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()
