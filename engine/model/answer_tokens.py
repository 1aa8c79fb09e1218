"""The answer in token form: where its number starts, and the gold answer in the model's own format."""

from __future__ import annotations

from engine.model.answers import answer_span
from engine.model.codi import CodiModel


def number_token_index(model: CodiModel, tokens: list[int]) -> int | None:
    """Index of the token where the parsed answer number starts (None if there is no number).

    The number is the one parse_answer reads (answer_span gives its place in the decoded text), so the
    answer-position measures and the stored answer always speak of the same number.
    """
    text = model.tokenizer.decode(tokens, skip_special_tokens=True)
    found = answer_span(text)
    if found is None:
        return None
    start = found[1]
    for i in range(len(tokens)):
        if len(model.tokenizer.decode(tokens[: i + 1], skip_special_tokens=True)) > start:
            return i
    return None


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def gold_tokens(model: CodiModel, baseline_tokens: list[int], gold: float) -> list[int]:
    """The gold answer in the model's own answer format (its baseline's text with the number replaced),
    ending with EOS: log p(gold) is the probability of the whole answer, so "42" is not scored as a
    prefix of "420" (EOS is a vocabulary token, never the pad id that log-prob sums leave out)."""
    idx = number_token_index(model, baseline_tokens)
    if idx is None:
        text = f" The answer is: {format_number(gold)}"
    else:
        prefix = model.tokenizer.decode(baseline_tokens[:idx], skip_special_tokens=True)
        number_piece = model.tokenizer.decode(baseline_tokens[idx : idx + 1], skip_special_tokens=True)
        spacing = number_piece[: len(number_piece) - len(number_piece.lstrip())]
        text = prefix + spacing + format_number(gold)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = model.tokenizer.eos_token_id
    return ids if eos is None else ids + [eos]
