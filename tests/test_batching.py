"""A left-padded batch gives the same results as the same questions run one by one."""

import torch

from tests.test_positions import QUESTIONS


def test_left_padded_batch_matches_single_runs(random_codi):
    model = random_codi
    _, batched_logits = model.latent_loop(model.question_batch(QUESTIONS))
    for row, q in enumerate(QUESTIONS):
        _, single = model.latent_loop(model.question_batch([q]))
        torch.testing.assert_close(batched_logits[row], single[0], atol=1e-4, rtol=1e-4)
    assert model.answer(QUESTIONS) == [model.answer([q])[0] for q in QUESTIONS]
    assert model.teacher_answer(QUESTIONS, 20) == [model.teacher_answer([q], 20)[0] for q in QUESTIONS]


def test_greedy_decoding_never_emits_extra_tokens(random_codi):
    model = random_codi
    state, logits = model.latent_loop(model.question_batch(QUESTIONS))
    # make the extra tokens the most likely ones: they must still never be chosen
    logits[:, model.base_vocab_size :] = 1e4
    tokens = model.decode_greedy(state, logits, max_new_tokens=5)
    first = tokens[:, 0]
    assert (first < model.base_vocab_size).all()


def test_fused_gelu_matches_gpt2_gelu_new():
    from transformers.activations import ACT2FN

    from engine.model.bundled import fused_activation

    x = torch.linspace(-8, 8, 10_001)
    fused = ACT2FN[fused_activation("gelu_new")]
    torch.testing.assert_close(fused(x), ACT2FN["gelu_new"](x), atol=1e-6, rtol=1e-5)
    assert fused_activation("relu") == "relu"
