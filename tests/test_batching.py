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
    logits[:, model.base_vocab_size:] = 1e4
    tokens = model.decode_greedy(state, logits, max_new_tokens=5)
    first = tokens[:, 0]
    assert (first < model.base_vocab_size).all()
