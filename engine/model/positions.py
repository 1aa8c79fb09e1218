"""The position map of SPEC 2.3, used by every part of the program.

Sequence of one problem (after left padding, every row of a batch shares these columns):

    [pad ...] question tokens (Q of them) | BOT | T0 T1 T2 T3 T4 T5 | EOT | answer tokens ...

Per row, position ids count real tokens only: question 0..Q-1, BOT = Q, thought Tk = Q+1+k,
EOT = Q+7. Warehouse position codes: -2 question (all its tokens summed), -1 BOT, 0..5 thoughts,
6 EOT.
"""

from __future__ import annotations

from dataclasses import dataclass

from warehouse.vocab import BOT, CODES, EOT, N_THOUGHTS, NAMES, QUESTION, THOUGHTS, name

__all__ = ["BOT", "CODES", "EOT", "NAMES", "N_THOUGHTS", "QUESTION", "THOUGHTS", "ColumnMap", "name"]


@dataclass(frozen=True)
class ColumnMap:
    """Column indices in a left-padded batch whose question part (incl. BOT) is `prefix_len` wide."""

    prefix_len: int

    @property
    def bot(self) -> int:
        return self.prefix_len - 1

    def thought(self, k: int) -> int:
        if not 0 <= k < N_THOUGHTS:
            raise IndexError(f"thought index {k} outside 0..{N_THOUGHTS - 1}")
        return self.prefix_len + k

    @property
    def eot(self) -> int:
        return self.prefix_len + N_THOUGHTS

    @property
    def answer_start(self) -> int:
        """Column of the first generated answer token (predicted by the logits at EOT)."""
        return self.eot + 1

    def column(self, code: int) -> int:
        """Column of a single-token position code (BOT, T0..T5, EOT)."""
        if code == BOT:
            return self.bot
        if code == EOT:
            return self.eot
        if code in THOUGHTS:
            return self.thought(code)
        raise ValueError(f"position code {code} is not a single column (question tokens are summed)")
