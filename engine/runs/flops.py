"""FLOPs of whatever runs a CODI model, counted analytically from what it feeds the model (bench engine).

`counting(model)` installs three pre-hooks that see every forward call from the outside: on the decoder
(`model.body`, which every pass runs, with or without the output layer: rows x new positions, and the
keys each of them attends to: the cache length before the call plus the new positions), on the
output layer (the positions it is applied to: the engine skips it on thought steps and applies it in row
blocks; transformers applies it to every position fed unless told `logits_to_keep`) and on the projection
`prj` (rows projected). From those counts:

    2 x (matmul weights of the decoder blocks) per position fed
  + 2 x (output layer weights) per position the output layer is applied to
  + 4 x layers x (heads x head_dim) per query-key pair scored (QK^T and attention x V; eager attention
    and SDPA with a mask both score every key of the cache, masked or not)
  + 2 x (matmul weights of prj) per row projected

Biases, norms, activations, softmax and embedding lookups are left out (well under 1% at these shapes).
`tests/test_peers.py` holds the count to torch's own FlopCounterMode on a real run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

from engine.interventions.patching import decoder_blocks
from engine.model.codi import CodiModel


@dataclass
class FlopCount:
    positions: int = 0  # rows x new positions fed through the base LM, over every call
    pairs: int = 0  # rows x new positions x keys attended (per layer)
    headed: int = 0  # positions the output layer was applied to
    projected: int = 0  # rows through prj
    calls: int = 0  # forward calls of the base LM
    per_position: int = 0  # 2 x matmul weights of the decoder blocks
    per_pair: int = 0  # 4 x layers x heads x head_dim
    per_head: int = 0  # 2 x weights of the output layer
    per_projection: int = 0  # 2 x matmul weights of prj

    @property
    def flops(self) -> int:
        return (
            self.per_position * self.positions
            + self.per_pair * self.pairs
            + self.per_head * self.headed
            + self.per_projection * self.projected
        )


def _matmul_weights(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.dim() == 2)


@contextmanager
def counting(model: CodiModel) -> Iterator[FlopCount]:
    """Count the FLOPs of the forward calls made on `model` inside the block (see the module doc)."""
    config = model.codi.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    output = model.codi.get_output_embeddings()
    count = FlopCount(
        per_position=2 * _matmul_weights(decoder_blocks(model.codi)),
        per_pair=4 * model.n_layers * config.num_attention_heads * head_dim,
        per_head=2 * output.weight.numel(),
        per_projection=2 * _matmul_weights(model.prj),
    )

    def on_lm(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        fed = kwargs.get("input_ids")
        if fed is None:
            fed = kwargs.get("inputs_embeds")
        if fed is None and args:
            fed = args[0]
        if fed is None:
            raise ValueError("a forward call without input_ids or inputs_embeds: nothing to count")
        rows, new = fed.shape[0], fed.shape[1]
        cache = kwargs.get("past_key_values")
        before = cache.get_seq_length() if cache is not None else 0
        count.positions += rows * new
        count.pairs += rows * new * (before + new)
        count.calls += 1

    def on_prj(_module: nn.Module, args: tuple) -> None:
        count.projected += args[0].numel() // args[0].shape[-1]

    def on_head(_module: nn.Module, args: tuple) -> None:
        count.headed += args[0].numel() // args[0].shape[-1]

    handles = [
        model.body.register_forward_pre_hook(on_lm, with_kwargs=True),
        output.register_forward_pre_hook(on_head),
        model.prj.register_forward_pre_hook(on_prj),
    ]
    try:
        yield count
    finally:
        for handle in handles:
            handle.remove()
