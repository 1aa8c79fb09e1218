"""Answer parsing (SPEC 2.3 step 6): one definition used by eval, run and every test."""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def answer_span(text: str) -> tuple[float, int, int] | None:
    """The number a model's output states and where it stands: (value, start, end) in `text` itself.

    The rule is parse_answer's: after the last "The answer is", else after the last "####", else the
    last number, with thousands separators removed first. The span is in the original text (commas
    included), so the answer-number position in token space is the number that was parsed.
    """
    removed = {m.start() for m in _THOUSANDS.finditer(text)}
    kept = [i for i in range(len(text)) if i not in removed]
    clean = "".join(text[i] for i in kept)

    def span(match: re.Match[str]) -> tuple[float, int, int]:
        return float(match.group()), kept[match.start()], kept[match.end() - 1] + 1

    for marker in ("The answer is", "####"):
        if marker in clean:
            after = len(clean) - len(clean.split(marker)[-1])
            match = _NUMBER.search(clean, after)
            if match is not None:
                return span(match)
    matches = list(_NUMBER.finditer(clean))
    return span(matches[-1]) if matches else None


def parse_answer(text: str) -> float | None:
    """The number a model's output states: after "The answer is", else after "####", else the last.

    Thousands separators are removed first. Returns None when no number can be found; such an
    output is simply wrong (its text is stored by the caller).
    """
    found = answer_span(text)
    return None if found is None else found[0]


def is_correct(predicted: float | None, gold: float) -> bool:
    """Numerically equal within 1e-6 relative tolerance (absolute for gold == 0)."""
    if predicted is None or not math.isfinite(predicted):
        return False
    return math.isclose(predicted, gold, rel_tol=1e-6, abs_tol=1e-9)
