"""Answer parsing (SPEC 2.3 step 6): one definition used by eval, run and every test."""
from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def parse_answer(text: str) -> float | None:
    """The number a model's output states: after "The answer is", else after "####", else the last.

    Thousands separators are removed first. Returns None when no number can be found; such an
    output is simply wrong (its text is stored by the caller).
    """
    clean = _THOUSANDS.sub("", text)
    for marker in ("The answer is", "####"):
        if marker in clean:
            value = _first_number(clean.split(marker)[-1])
            if value is not None:
                return value
    numbers = _NUMBER.findall(clean)
    return float(numbers[-1]) if numbers else None


def is_correct(predicted: float | None, gold: float) -> bool:
    """Numerically equal within 1e-6 relative tolerance (absolute for gold == 0)."""
    if predicted is None or not math.isfinite(predicted):
        return False
    return math.isclose(predicted, gold, rel_tol=1e-6, abs_tol=1e-9)
