"""The patch site at the last block: its clean value is the block's own output, not the final norm's.

transformers fills `hidden_states[n_layers]` with the output of the final LayerNorm; the engine once
read the last block's clean value from there and wrote that normed value back where the raw output
belongs, so at L = n_layers - 1 (the end of every `--layers all` sweep) even the `clean` control
changed answers. These tests patch the last block of a model whose final norm has learned (here:
random, not 1 and 0) scale and shift: with the identity-initialised norm of a random model,
LN(LN(x)) = LN(x) and the wrong site value would go unnoticed.
"""

from __future__ import annotations

import copy

import polars as pl
import pytest
import torch

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.interventions.patching import decoder_blocks, recording
from ingest.datasets import synthetic_problems


@pytest.fixture(scope="module")
def codi(random_codi):
    """The random 4-layer model with a trained-looking final LayerNorm (scale around 1, nonzero shift)."""
    model = copy.deepcopy(random_codi)
    norm = model.codi.base_model.ln_f  # GPT2Model under the LM head
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=generator))
        norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def last(codi) -> int:
    return codi.n_layers - 1


def options(layer: int, methods=("clean",)) -> EngineOptions:
    return EngineOptions((layer,), tuple(build_conditions([layer], methods)), 0, "none", max_new_tokens=8)


def test_the_model_has_a_final_norm_that_changes_the_last_block_output(codi, last):
    """The premise: hidden_states[-1] is ln_f(block output), which differs from the block output."""
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    with recording(codi.codi, [last]) as seen:
        out = codi.codi(input_ids=ids, output_hidden_states=True)
    raw = seen[last]
    normed = out.hidden_states[-1][:, -1, :]
    assert not torch.allclose(raw, normed, atol=1e-3)
    blocks = decoder_blocks(codi.codi)
    assert len(blocks) == codi.n_layers and len(out.hidden_states) == codi.n_layers + 1
    final_norm = codi.codi.base_model.ln_f
    torch.testing.assert_close(final_norm(raw), normed, rtol=1e-5, atol=1e-5)


def test_clean_control_at_the_last_block_reproduces_the_baseline(codi, last):
    problems = synthetic_problems(4, seed=9)
    results = run_chunk(codi, problems, options(last)).results
    base = results.filter(pl.col("method") == "baseline").select(
        "problem_id", base="answer_text", base_logp="logp_gold"
    )
    clean = results.filter(pl.col("method") == "clean").join(base, on="problem_id")
    assert clean.height == 4 * 6 and (clean["layer"] == last).all()
    assert (clean["answer_text"] == clean["base"]).all()
    for column in ("kl_first", "kl_answer", "kl_max", "js_first", "disruption"):
        assert (clean[column].drop_nulls().abs() < 1e-5).all(), column
    assert ((clean["logp_gold"] - clean["base_logp"]).abs() < 1e-4).all()
