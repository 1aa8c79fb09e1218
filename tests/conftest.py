"""Shared fixtures: a small random GPT-2 CODI model with a real tokenizer, built offline in <1 s."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config

from engine.model.bundled import build_gpt2_codi
from engine.model.tokenizer import train_tokenizer
from ingest.synthetic import generate


@pytest.fixture(scope="session")
def small_tokenizer():
    records = generate(300, seed=11)
    return train_tokenizer([r["question"] + " " + r["answer"] + " The answer is: 12" for r in records], 400)


@pytest.fixture(scope="session")
def random_codi(small_tokenizer):
    """4-layer GPT-2 CODI module with random weights, eager attention, eval mode."""
    torch.manual_seed(0)
    base = GPT2Config(
        vocab_size=len(small_tokenizer),
        n_positions=192,
        n_embd=64,
        n_layer=4,
        n_head=4,
        bos_token_id=small_tokenizer.eos_token_id,
        eos_token_id=small_tokenizer.eos_token_id,
    )
    return build_gpt2_codi(base, small_tokenizer, prj_dim=96).eval()
