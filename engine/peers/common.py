"""What both peers share: the model's parts, the key groups of an attention row, and turning rows into frames.

Nothing here comes from the engine's own machinery (engine/interventions/loop.py, staged.py, kvcache.py,
patching.py) or from its row assembly (rows.py). Shared by design, because they define what a row *is*:
the measurement functions (measures.py), the replacement values (methods.py), the answer rules and the
gold answer in token form (engine.model), and the result columns (`RESULT_SCHEMA`, the warehouse's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from torch import nn

from engine.interventions.conditions import Condition
from engine.interventions.measures import attention_disruption, entropy, js_divergence, kl_divergence
from engine.interventions.rows import RESULT_SCHEMA, condition_columns
from engine.model.answer_tokens import number_token_index
from engine.model.answers import is_correct, parse_answer
from engine.model.codi import CodiModel
from engine.model.positions import BOT, EOT, N_THOUGHTS, QUESTION

# The attention of one row: queries T0..T5, EOT x keys Q (question tokens summed), BOT, T0..T5, EOT.
QUERIES = N_THOUGHTS + 1
KEYS = N_THOUGHTS + 3
QUERY_CODES = np.array([*range(N_THOUGHTS), EOT], dtype=np.int16)
KEY_CODES = np.array([QUESTION, BOT, *range(N_THOUGHTS), EOT], dtype=np.int16)
# query Tk sees Q, BOT and T0..Tk (keys 0..k+2); EOT sees all nine
SEEN = np.array([[key <= query + 2 for key in range(KEYS)] for query in range(QUERIES)])

BlockOutput = torch.Tensor | tuple  # what a decoder block returns (transformers 5: a tensor)
Hook = Callable[[nn.Module, object, BlockOutput], BlockOutput | None]  # a forward hook on a block


class Problem(Protocol):
    """What the peers read of a problem (ingest's Problem has these and more)."""

    problem_id: str
    question: str
    gold: float


@dataclass
class PeerOutput:
    """A peer's rows: `results` as `run_chunk(...).results` (same columns and keys), `attention` as
    `run_chunk(...).attention` (None when opts.attention is "none")."""

    results: pl.DataFrame
    attention: pa.Table | None


@dataclass
class Clean:
    """One problem's baseline row, with what its condition rows are measured against."""

    tokens: list[int]  # greedy answer tokens, up to and including EOS
    text: str
    forced_logp: torch.Tensor  # [T, V] log-probs along its own answer (position 0: at EOT)
    logp_gold: float
    gold: list[int]  # the gold answer in its answer format, ending with EOS
    eot_row: torch.Tensor  # [H, keys] last layer's attention of the EOT query over every key
    attention: torch.Tensor | None  # [layers, heads, 7, 9] key groups (NaN where not visible)
    sites: torch.Tensor  # [len(opts.layers), 6, d] block outputs at each thought, float32


def blocks(model: CodiModel) -> nn.ModuleList:
    """The decoder blocks (GPT-2: transformer.h, LLaMA: model.layers; also under a PEFT wrapper's
    base_model, or on the bare transformer that `base_model` names)."""
    for owner in (model.codi, getattr(model.codi, "base_model", None)):
        for path in (
            ("transformer", "h"),
            ("model", "layers"),
            ("h",),
            ("layers",),
            ("model", "model", "layers"),
        ):
            found = owner
            for name in path:
                found = getattr(found, name, None)
            if isinstance(found, nn.ModuleList):
                return found
    raise TypeError(f"cannot find the decoder blocks of {type(model.codi).__name__}")


def block_output(output: BlockOutput) -> torch.Tensor:
    """A block's hidden states, whether the block returns a tensor or a tuple starting with one."""
    return output[0] if isinstance(output, tuple) else output


def with_block_output(output: BlockOutput, hidden: torch.Tensor) -> BlockOutput:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def masked(model: CodiModel, logits: torch.Tensor) -> torch.Tensor:
    """Logits with pad/BOT/EOT (every row past the base vocabulary) at -inf: what decoding chooses from."""
    logits = logits.clone()
    logits[..., model.base_vocab_size :] = float("-inf")
    return logits


def log_softmax(model: CodiModel, logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(masked(model, logits).float(), dim=-1)


def key_groups(attentions: tuple, query: int, prefix: int, dst: int) -> torch.Tensor:
    """[rows, layers, heads, 9]: the attention of the query at column `query` (the row's thought `dst`,
    6 = EOT) over Q (summed), BOT, T0..T5, EOT; NaN where the query cannot see the key. `prefix`: the
    question's columns including BOT."""
    att = torch.stack([a[:, :, query, :] for a in attentions], dim=1).float()
    out = torch.full((*att.shape[:3], KEYS), float("nan"), device=att.device)
    out[..., 0] = att[..., : prefix - 1].sum(-1)
    out[..., 1] = att[..., prefix - 1]
    thoughts = min(dst + 1, N_THOUGHTS)
    out[..., 2 : 2 + thoughts] = att[..., prefix : prefix + thoughts]
    if dst == N_THOUGHTS:
        out[..., KEYS - 1] = att[..., prefix + N_THOUGHTS]
    return out


def sum_log_prob(logp: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """log P(tokens) per row from teacher-forced log-probs [..., len(tokens), V]."""
    index = torch.tensor(tokens, device=logp.device)
    picked = logp.gather(-1, index.expand(*logp.shape[:-1])[..., None])[..., 0]
    return picked.sum(-1)


def _value(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _values(t: torch.Tensor) -> list[float | None]:
    return [_value(v) for v in t.double().cpu().tolist()]


def clean_measures(model: CodiModel, clean: Clean) -> dict[str, float | None]:
    """The baseline row's own measures: divergences from itself are 0 (None if its distribution at EOT is
    not finite), entropies and log p(gold) its own."""
    eot = clean.forced_logp[0]
    finite = not bool(torch.isnan(eot).any()) and bool((eot < float("inf")).all())
    zero = 0.0 if finite else None
    index = number_token_index(model, clean.tokens)
    at_answer = None if index is None else clean.forced_logp[index]
    return {
        "kl_first": zero,
        "kl_answer": None if index is None else zero,
        "kl_max": zero,
        "js_first": zero,
        "entropy_first": _value(float(entropy(eot))),
        "logp_gold": _value(clean.logp_gold),
        "disruption": zero,
        "js_answer": None if index is None else zero,
        "entropy_answer": None if at_answer is None else _value(float(entropy(at_answer))),
    }


def condition_measures(
    model: CodiModel, clean: Clean, forced_logp: torch.Tensor, logp_gold: torch.Tensor, eot_row: torch.Tensor
) -> dict[str, list[float | None]]:
    """Measures of condition rows against their problem's baseline.

    `forced_logp` [R, T, V]: the rows' log-probs along the baseline's answer tokens (T = its length, EOS
    included; position 0 at EOT). KL is KL(baseline || row) summed over the vocabulary; `*_first` at EOT,
    `*_answer` where the baseline's answer number starts (None without a number), `kl_max` over all T.
    `eot_row` [R, H, keys]: each row's last-layer EOT attention, for `disruption`.
    """
    base = clean.forced_logp[None].expand_as(forced_logp)
    kl = kl_divergence(base, forced_logp)  # [R, T]
    index = number_token_index(model, clean.tokens)
    missing: list[float | None] = [None] * len(forced_logp)
    answer = {"kl_answer": missing, "js_answer": missing, "entropy_answer": missing}
    if index is not None:
        answer = {
            "kl_answer": _values(kl[:, index]),
            "js_answer": _values(js_divergence(base[:, index], forced_logp[:, index])),
            "entropy_answer": _values(entropy(forced_logp[:, index])),
        }
    return {
        "kl_first": _values(kl[:, 0]),
        "kl_max": _values(kl.max(-1).values),
        "js_first": _values(js_divergence(base[:, 0], forced_logp[:, 0])),
        "entropy_first": _values(entropy(forced_logp[:, 0])),
        "logp_gold": _values(logp_gold),
        "disruption": _values(attention_disruption(clean.eot_row[None].expand_as(eot_row), eot_row)),
        **answer,
    }


class Frames:
    """Result and attention rows collected problem by problem, then made into the two frames."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in RESULT_SCHEMA}
        self.attention: list[tuple[str, np.ndarray, np.ndarray]] = []  # problem, condition ids, [R,L,H,7,9]

    def add_row(
        self,
        problem: Problem,
        cond: Condition,
        donor: tuple[str | None, int | None],
        text: str,
        base_correct: bool,
        measures: dict[str, float | None],
    ) -> None:
        """One result row (`base_correct`: whether the problem's baseline answer is correct)."""
        value = parse_answer(text)
        correct = is_correct(value, problem.gold)
        row = {
            "problem_id": problem.problem_id,
            **condition_columns(cond),
            "donor_problem_id": donor[0],
            "donor_thought": donor[1],
            "answer_text": text,
            "answer_value": None if value is None or not math.isfinite(value) else value,
            "correct": correct,
            "flipped": base_correct and not correct,
            "fixed": not base_correct and correct,
            **measures,
        }
        for name, column in self.columns.items():
            column.append(row[name])

    def add_attention(self, problem_id: str, condition_ids: list[int], weights: torch.Tensor) -> None:
        """Key groups [R, layers, heads, 7, 9] of the rows `condition_ids` of one problem."""
        self.attention.append(
            (problem_id, np.array(condition_ids, dtype=np.int16), weights.float().cpu().numpy())
        )

    def output(self) -> PeerOutput:
        results = pl.DataFrame(self.columns, schema=RESULT_SCHEMA)
        return PeerOutput(results, self._attention_table() if self.attention else None)

    def _attention_table(self) -> pa.Table:
        """Long format: one row per (problem, condition, layer, head, query, visible key)."""
        ids = [problem for problem, _, _ in self.attention]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("problem", "condition", "layer", "head")}
        queries, keys, weights = [], [], []
        for n, (_, conditions, w) in enumerate(self.attention):
            rows, layers, heads = w.shape[:3]
            grid = np.indices((rows, layers, heads, QUERIES, KEYS))[:, :, :, :, SEEN]  # [5, R, L, H, 42]
            parts["problem"].append(np.full(grid[0].size, n, dtype=np.int32))
            parts["condition"].append(conditions[grid[0].reshape(-1)])
            parts["layer"].append(grid[1].reshape(-1).astype(np.int16))
            parts["head"].append(grid[2].reshape(-1).astype(np.int16))
            queries.append(QUERY_CODES[grid[3].reshape(-1)])
            keys.append(KEY_CODES[grid[4].reshape(-1)])
            weights.append(w[:, :, :, SEEN].reshape(-1).astype(np.float32))
        return pa.table(
            {
                "problem_id": pa.DictionaryArray.from_arrays(np.concatenate(parts["problem"]), pa.array(ids)),
                "condition_id": np.concatenate(parts["condition"]),
                "layer": np.concatenate(parts["layer"]),
                "head": np.concatenate(parts["head"]),
                "dst": np.concatenate(queries),
                "src": np.concatenate(keys),
                "weight": np.concatenate(weights),
            }
        )
