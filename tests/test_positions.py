"""The position map (SPEC 2.3): columns, position ids and the sequence every step sees."""

import pytest

from engine.model.positions import BOT, CODES, EOT, NAMES, QUESTION, ColumnMap

QUESTIONS = [
    "Ann has 3 apples. Ann buys 2 more apples. How many apples does Ann have now?",
    (
        "Bo has 12 coins. Bo loses 4 coins. Bo ends up with 3 times as many coins. Bo finds 9 more "
        "coins. How many coins does Bo have now?"
    ),
    "Cy has 5 eggs. How many eggs does Cy have now?",
]


def test_codes_and_names():
    assert CODES == (-2, -1, 0, 1, 2, 3, 4, 5, 6)
    assert NAMES[QUESTION] == "Q" and NAMES[BOT] == "BOT" and NAMES[0] == "T0" and NAMES[EOT] == "EOT"


def test_column_map():
    cols = ColumnMap(prefix_len=10)
    assert cols.bot == 9 and cols.thought(0) == 10 and cols.thought(5) == 15
    assert cols.eot == 16 and cols.answer_start == 17
    assert [cols.column(c) for c in (BOT, 0, 5, EOT)] == [9, 10, 15, 16]
    with pytest.raises(IndexError):
        cols.thought(6)
    with pytest.raises(ValueError):
        cols.column(QUESTION)


def test_position_ids_of_every_step_follow_the_map(random_codi):
    """Question 0..Q-1, BOT Q, thought k at Q+1+k, EOT Q+7, for each row of a left-padded batch."""
    model = random_codi
    calls = []

    def record(module, args, kwargs):
        calls.append(
            (
                kwargs.get("input_ids", args[0] if args else None),
                kwargs["position_ids"].clone(),
                kwargs["attention_mask"].clone(),
            )
        )

    # the base model runs in every pass, with or without the LM head (CodiModel.step head=)
    handle = model.codi.base_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        batch = model.question_batch(QUESTIONS)
        model.latent_loop(batch)
    finally:
        handle.remove()
    lengths = [len(model.encode_question(q)) - 1 for q in QUESTIONS]  # Q per row (without BOT)
    q_ids, q_pos, q_mask = calls[0]
    assert (q_ids[:, batch.columns.bot] == model.bot_id).all()
    for row, q in enumerate(lengths):
        real = q_mask[row].bool()
        assert q_pos[row, real].tolist() == list(range(q + 1))  # question 0..Q-1 and BOT at Q
        assert not real[: q_ids.shape[1] - q - 1].any()  # left padding only
    assert len(calls) == 1 + 6 + 1  # question pass, six thoughts, EOT
    for step, (_, pos, mask) in enumerate(calls[1:]):
        assert pos[:, 0].tolist() == [q + 1 + step for q in lengths]  # Tk = Q+1+k; EOT = Q+7
        assert mask.shape[1] == batch.columns.prefix_len + step + 1  # the mask grows with every step
        assert (mask[:, -1] == 1).all()
