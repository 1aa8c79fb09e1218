"""The staged KV cache: rows joining mid-loop see exactly the keys/values a full recomputation gives."""

from __future__ import annotations

import torch

from engine.interventions.kvcache import StagedCache
from engine.interventions.loop import start_questions
from engine.model.codi import LoopState
from ingest.datasets import synthetic_problems


def test_appends_in_place_and_crops_without_copying(random_codi):
    _, state, _ = start_questions(random_codi, [p.question for p in synthetic_problems(2, seed=4)])
    length = state.cache.get_seq_length()
    cache = StagedCache.allocate(state.cache, rows=4, capacity=length + 4)
    cache.join(state.cache, torch.tensor([0, 1, 1, 0]), length)
    layer = cache.layers[0]
    buffer = layer.key_buffer.data_ptr()
    new = torch.randn(4, layer.keys.shape[1], 1, layer.keys.shape[3])
    keys, _ = layer.update(new, new)
    assert layer.key_buffer.data_ptr() == buffer  # written into the preallocated buffer
    assert keys.shape[2] == length + 1 and torch.equal(keys[:, :, -1:], new)
    assert torch.equal(keys[2, :, :length], state.cache.layers[0].keys[1])
    cache.crop(-1)
    assert cache.get_seq_length() == length and layer.key_buffer.data_ptr() == buffer
    sub = cache.select(torch.tensor([3]), room=2)
    assert sub.active == 1 and torch.equal(sub.layers[0].keys[0], state.cache.layers[0].keys[0])
    assert cache.active == 4  # select leaves the source alone


def test_row_joining_at_step_k_matches_running_from_the_start(random_codi):
    """A row that joins at thought step 2 with the baseline cache gives the same logits as one that ran
    steps 0-1."""
    model = random_codi
    problems = synthetic_problems(2, seed=5)
    _, state, z = start_questions(model, [p.question for p in problems])
    qlen, qmask, qnext = state.checkpoint()
    inputs = []
    for _ in range(3):
        inputs.append(z)
        out = model.step(state, z, output_hidden_states=True)
        z = model.project(out.hidden_states[-1][:, -1:, :])
    full_logits = out.logits[:, -1]
    cache = StagedCache.allocate(state.cache, rows=2, capacity=qlen + 8)
    cache.join(state.cache, torch.tensor([1, 0]), qlen + 2)  # rows swapped on purpose
    staged = LoopState(
        cache, torch.cat([qmask[[1, 0]], qmask.new_ones(2, 2)], 1), qnext[[1, 0]] + 2, state.columns
    )
    out = model.step(staged, inputs[2][[1, 0]])
    assert torch.allclose(out.logits[:, -1], full_logits[[1, 0]], atol=1e-5)
