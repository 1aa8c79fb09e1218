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


class StagedCache(DynamicCache):
    """A `DynamicCache` made of `BufferedLayer`s, with rows that join at later steps (`join`)."""

    def __init__(self, layers: list[BufferedLayer]):
        super(DynamicCache, self).__init__(layers=layers)

    @classmethod
    def allocate(cls, like: DynamicCache, rows: int, capacity: int) -> StagedCache:
        """Empty buffers for `rows` rows, shaped like the layers of `like` (no rows active yet)."""
        layers = []
        for layer in like.layers:
            batch, heads, _, dim = layer.keys.shape
            del batch
            # never read before written: views expose only the filled columns (no zeroing pass)
            keys = layer.keys.new_empty((rows, heads, capacity, dim))
            values = layer.values.new_empty((rows, heads, capacity, dim))
            layers.append(BufferedLayer(keys, values, active=0, length=0))
        return cls(layers)

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

        Only the filled part is copied; this cache is left unchanged.
        """
        layers = []
        for layer in self.layers:
            capacity = layer.length + room
            keys = layer.key_buffer[:, :, :capacity][indices]
            values = layer.value_buffer[:, :, :capacity][indices]
            layers.append(BufferedLayer(keys, values, active=len(indices), length=layer.length))
        return StagedCache(layers)
