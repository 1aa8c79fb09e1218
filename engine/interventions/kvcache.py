"""A KV cache that appends in place and lets batch rows join while a loop runs.

Why: transformers' `DynamicCache` appends with `torch.cat`, copying the whole cache at every step.
With 42 conditions x several problems sharing a long question, those copies were ~40% of the
engine's time on CPU. Here each layer owns a buffer [rows, heads, capacity, head_dim] allocated once;
a step writes its new keys/values into the next free columns, and the layer exposes views
`buffer[:active, :, :length]` (strided views that the attention matmuls consume without copying).

Rows are *staged*: the rows of conditions on thought k join the batch at step k (their first k
thoughts are identical to the baseline's), so the active rows are always a prefix of the buffer and a
row joins by having its problem's baseline keys/values copied in (`join`).
"""

from __future__ import annotations

import math

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class BufferedLayer(DynamicLayer):
    """One decoder layer's keys/values in a preallocated buffer; `keys`/`values` are views of it."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, active: int, length: int):
        super().__init__()
        self.key_buffer, self.value_buffer = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.active, self.length = active, length
        self._expose()

    def _expose(self) -> None:
        self.keys = self.key_buffer[: self.active, :, : self.length]
        self.values = self.value_buffer[: self.active, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, _, new, _ = key_states.shape
        if rows != self.active:
            raise ValueError(f"cache has {self.active} active rows, the step fed {rows}")
        end = self.length + new
        if end > self.key_buffer.shape[2]:
            self._grow(end)
        self.key_buffer[:rows, :, self.length : end] = key_states
        self.value_buffer[:rows, :, self.length : end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self.key_buffer.shape[2])
        for name in ("key_buffer", "value_buffer"):
            old = getattr(self, name)
            new = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the negated number of tokens to remove")
        self.length -= abs(tokens_to_remove)
        self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only `indices` of the active rows (a copy: the buffer is re-allocated)."""
        self.key_buffer = self.key_buffer[indices]
        self.value_buffer = self.value_buffer[indices]
        self.active = len(indices)
        self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("staged caches grow by join(), not by repeating rows")


# (device, dtype, purpose) -> one flat block of memory a finished cache gave back (StagedCache.release);
# purpose: "staged" (a chunk's rows) or "select" (rows copied out of it, alive at the same time)
_SPARE: dict[tuple[torch.device, torch.dtype, str], torch.Tensor] = {}


def _take_spare(like: torch.Tensor, numel: int, purpose: str = "staged") -> torch.Tensor:
    """A flat tensor of at least `numel` elements: the spare block when big enough, else a new one."""
    spare = _SPARE.pop((like.device, like.dtype, purpose), None)
    if spare is not None and spare.numel() >= numel:
        return spare
    return like.new_empty(numel)


def _carve(
    like: torch.Tensor, shapes: list[tuple[int, int, int, int]], purpose: str
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """One block of memory (`_take_spare`) cut into a keys and a values view of each shape, in order."""
    sizes = [math.prod(shape) for shape in shapes]
    block = _take_spare(like, 2 * sum(sizes), purpose)
    pairs, offset = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        pairs.append(
            (block[offset : offset + size].view(shape), block[offset + size : offset + 2 * size].view(shape))
        )
        offset += 2 * size
    return block, pairs


class StagedCache(DynamicCache):
    """A `DynamicCache` made of `BufferedLayer`s, with rows that join at later steps (`join`)."""

    def __init__(self, layers: list[BufferedLayer]):
        super(DynamicCache, self).__init__(layers=layers)

    @classmethod
    def allocate(cls, like: DynamicCache, rows: int, capacity: int) -> StagedCache:
        """Empty buffers for `rows` rows, shaped like the layers of `like` (no rows active yet).

        The buffers are views of one block of memory taken from `_SPARE` (the block the previous chunk
        gave back with `release`) when it is big enough: a fresh block of hundreds of MB costs a page
        fault per 4 KB page on first touch, which made copying rows in (`join`) several times slower.
        Never read before written: the views expose only the filled columns (no zeroing pass).
        """
        shapes = [(rows, layer.keys.shape[1], capacity, layer.keys.shape[3]) for layer in like.layers]
        block, pairs = _carve(like.layers[0].keys, shapes, "staged")
        cache = cls([BufferedLayer(keys, values, active=0, length=0) for keys, values in pairs])
        cache.block, cache.purpose = block, "staged"
        return cache

    def release(self) -> None:
        """Give this cache's memory back for the next `allocate` (this cache must not be used after)."""
        block = getattr(self, "block", None)
        if block is not None:
            self.block = None
            _SPARE[(block.device, block.dtype, self.purpose)] = block

    @property
    def active(self) -> int:
        return self.layers[0].active

    def join(self, source: DynamicCache, source_rows: torch.Tensor, length: int) -> None:
        """Activate len(source_rows) more rows holding the first `length` positions of those source rows.

        Every active row must be at `length` already (rows stay aligned position by position).
        """
        start = self.active
        end = start + len(source_rows)
        for mine, theirs in zip(self.layers, source.layers, strict=True):
            if start and mine.length != length:
                raise ValueError(f"rows joining at length {length}, cache is at {mine.length}")
            mine.key_buffer[start:end, :, :length] = theirs.keys[source_rows, :, :length]
            mine.value_buffer[start:end, :, :length] = theirs.values[source_rows, :, :length]
            mine.active, mine.length = end, length
            mine._expose()

    def select(self, indices: torch.Tensor, room: int) -> StagedCache:
        """A new cache holding only `indices` of the active rows, with space for `room` more positions.

        Only the filled part is copied, into memory reused from the previous selection (`release`);
        this cache is left unchanged.
        """
        shapes = [
            (len(indices), layer.key_buffer.shape[1], layer.length + room, layer.key_buffer.shape[3])
            for layer in self.layers
        ]
        block, pairs = _carve(self.layers[0].key_buffer, shapes, "select")
        layers = []
        for layer, (keys, values) in zip(self.layers, pairs, strict=True):
            keys[:, :, : layer.length] = layer.key_buffer[indices, :, : layer.length]
            values[:, :, : layer.length] = layer.value_buffer[indices, :, : layer.length]
            layers.append(BufferedLayer(keys, values, active=len(indices), length=layer.length))
        cache = StagedCache(layers)
        cache.block, cache.purpose = block, "select"
        return cache
