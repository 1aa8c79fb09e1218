"""What the thoughts hold: the baseline rows' readouts (schema 7), built from what the baseline pass kept.

- `states`: every layer's state at T0..T5 and EOT (`run --states`). Layer -1 is the vector fed in at the
  position (a thought's input is the projection of the previous position's last hidden state; EOT's is
  the EOT embedding); layer L is block L's output, before the final norm. float32, one row per (problem,
  layer, position) holding d_model values.
- `decoding`: the logit lens (`run --decode-top K`): each state through the model's own final norm and
  output embedding (CodiModel.lens: the extra ids are never a prediction), softmax over the base
  vocabulary, the top K tokens with their probabilities.
- `question_tokens` and `token_attention` (`run --attention tokens`): the question's tokens (id, text, and
  the number written in the question that a token is part of) and the baseline's attention of T0..T5 and
  EOT to each of them, per layer and head. Summed over the question's tokens a query's weights equal its
  `attention` row for the question (src -2).

Built with numpy over whole tensors; the Python loops run once per problem or per distinct token id.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import torch

from engine.interventions.loop import DST_CODES, RowOutcome
from engine.interventions.options import EngineOptions
from engine.model.codi import CodiModel

# a number as questions write it: 1,200 or 3.5 or 48 (a comma between digit groups is part of it)
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
# the logit lens works through the vocabulary in blocks of at most this many logits (memory stays flat)
LENS_BLOCK = 1 << 24


def readout_tables(
    model: CodiModel, problems: list, base: RowOutcome, opts: EngineOptions
) -> dict[str, pa.Table]:
    """The readout tables the options ask for (schema.READOUT_TABLES), rows of the chunk's problems."""
    ids = [p.problem_id for p in problems]
    out: dict[str, pa.Table] = {}
    if base.states is not None and opts.states:
        out["states"] = states_table(ids, base.states)
    if base.states is not None and opts.decode_top > 0:
        probs, tokens = decode_states(model, base.states, opts.decode_top)
        out["decoding"] = decoding_table(model, ids, probs, tokens)
    if base.question_attention is not None:
        tokens_table, attention_table = question_tables(model, problems, base.question_attention)
        out["question_tokens"], out["token_attention"] = tokens_table, attention_table
    return out


def _layer_codes(n_layer_slots: int) -> np.ndarray:
    return np.arange(-1, n_layer_slots - 1, dtype=np.int16)  # -1 the input, then blocks 0..L-1


def _problem_column(ids: list[str], per_problem: int) -> pa.DictionaryArray:
    index = np.repeat(np.arange(len(ids), dtype=np.int32), per_problem)
    return pa.DictionaryArray.from_arrays(index, pa.array(ids))


def states_table(ids: list[str], states: torch.Tensor) -> pa.Table:
    """[N, 7, 1 + layers, d] -> one row per (problem, layer, position) with its d values, ordered by
    problem, layer, position."""
    n, n_pos, n_slots, d = states.shape
    values = states.permute(0, 2, 1, 3).contiguous().cpu().numpy().astype(np.float32, copy=False)
    rows = n * n_slots * n_pos
    offsets = np.arange(0, (rows + 1) * d, d, dtype=np.int32)
    return pa.table(
        {
            "problem_id": _problem_column(ids, n_slots * n_pos),
            "layer": np.tile(np.repeat(_layer_codes(n_slots), n_pos), n),
            "position": np.tile(DST_CODES[:n_pos], n * n_slots),
            "state": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1))),
        }
    )


@torch.no_grad()
def decode_states(model: CodiModel, states: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit lens's top-k of every state: (probabilities, token ids), each [N, 7, 1 + layers, k].

    Each state goes through the model's own final norm and output embedding (in the model's precision),
    then a float32 softmax over the base vocabulary; rows are done in blocks so that no more than
    LENS_BLOCK logits are alive at once.
    """
    flat = states.reshape(-1, states.shape[-1])
    dtype = next(model.codi.parameters()).dtype
    k = min(k, model.base_vocab_size)
    rows = max(1, LENS_BLOCK // model.base_vocab_size)
    probs, tokens = [], []
    for start in range(0, flat.shape[0], rows):
        block = flat[start : start + rows].to(device=model.device, dtype=dtype)
        p = torch.softmax(model.lens(block).float(), dim=-1)
        top = p.topk(k, dim=-1)
        probs.append(top.values)
        tokens.append(top.indices)
    shape = (*states.shape[:-1], k)
    return torch.cat(probs).reshape(shape), torch.cat(tokens).reshape(shape)


def token_texts(model: CodiModel, token_ids) -> dict[int, str]:
    """Each distinct token id decoded alone (leading space kept)."""
    return {int(t): model.tokenizer.decode([int(t)]) for t in np.unique(np.asarray(token_ids))}


def decoding_table(model: CodiModel, ids: list[str], probs: torch.Tensor, tokens: torch.Tensor) -> pa.Table:
    """[N, 7, 1 + layers, k] -> one row per (problem, layer, position, rank), ordered that way."""
    n, n_pos, n_slots, k = probs.shape
    p = probs.permute(0, 2, 1, 3).cpu().numpy().reshape(-1)
    t = tokens.permute(0, 2, 1, 3).cpu().numpy().reshape(-1).astype(np.int32)
    texts = token_texts(model, t)
    unique = np.array(sorted(texts), dtype=np.int32)
    text_index = np.searchsorted(unique, t).astype(np.int32)
    return pa.table(
        {
            "problem_id": _problem_column(ids, n_slots * n_pos * k),
            "layer": np.tile(np.repeat(_layer_codes(n_slots), n_pos * k), n),
            "position": np.tile(np.repeat(DST_CODES[:n_pos], k), n * n_slots),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n * n_slots * n_pos),
            "token_id": t,
            "token_text": pa.DictionaryArray.from_arrays(
                text_index, pa.array([texts[int(u)] for u in unique])
            ).dictionary_decode(),
            "prob": p.astype(np.float32),
        }
    )


def question_numbers(model: CodiModel, question: str) -> tuple[list[int], list[float | None]]:
    """The question's token ids as the engine feeds them (BOS first where the model takes one; BOT left
    out) and, per token, the value of the number written in the question that the token is part of."""
    encoded = model.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    spans = [(m.start(), m.end(), float(m.group().replace(",", ""))) for m in _NUMBER.finditer(question)]
    numbers: list[float | None] = []
    for start, end in encoded["offset_mapping"]:
        found = None
        for lo, hi, value in spans:
            if start < hi and lo < end and question[max(start, lo) : min(end, hi)].strip():
                found = value
                break
        numbers.append(found)
    fed = model.encode_question(question)[:-1]  # what the question pass feeds, less BOT
    if len(fed) == len(ids) + 1:  # the BOS the engine prepends (LLaMA)
        ids, numbers = [fed[0], *ids], [None, *numbers]
    if fed != ids:
        raise ValueError("the tokenizer's offsets do not match the question the engine feeds")
    return ids, numbers


def question_tables(
    model: CodiModel, problems: list, question_attention: torch.Tensor
) -> tuple[pa.Table, pa.Table]:
    """question_tokens and token_attention rows from [N, layers, heads, 7, question columns] (left-padded:
    problem p's Q tokens are the last Q columns)."""
    att = question_attention.cpu().numpy()
    n, n_layers, n_heads, n_dst, width = att.shape
    token_rows: dict[str, list] = {"problem_id": [], "token_pos": [], "token_id": [], "number": []}
    blocks, lengths = [], []
    for p, problem in enumerate(problems):
        ids, numbers = question_numbers(model, problem.question)
        q = len(ids)
        token_rows["problem_id"] += [problem.problem_id] * q
        token_rows["token_pos"] += list(range(q))
        token_rows["token_id"] += ids
        token_rows["number"] += numbers
        blocks.append(att[p, ..., width - q :].reshape(-1))  # [layers, heads, 7, Q] in that order
        lengths.append(q)
    texts = token_texts(model, token_rows["token_id"] or [0])
    tokens = pa.table(
        {
            "problem_id": token_rows["problem_id"],
            "token_pos": pa.array(token_rows["token_pos"], pa.int16()),
            "token_id": pa.array(token_rows["token_id"], pa.int32()),
            "token_text": [texts[t] for t in token_rows["token_id"]],
            "number": pa.array(token_rows["number"], pa.float64()),
        }
    )
    per_problem = [n_layers * n_heads * n_dst * q for q in lengths]
    layer = np.concatenate(
        [np.repeat(np.arange(n_layers, dtype=np.int16), n_heads * n_dst * q) for q in lengths]
    )
    head = np.concatenate(
        [np.tile(np.repeat(np.arange(n_heads, dtype=np.int16), n_dst * q), n_layers) for q in lengths]
    )
    dst = np.concatenate([np.tile(np.repeat(DST_CODES, q), n_layers * n_heads) for q in lengths])
    pos = np.concatenate([np.tile(np.arange(q, dtype=np.int16), n_layers * n_heads * n_dst) for q in lengths])
    ids = [p.problem_id for p in problems]
    index = np.repeat(np.arange(len(problems), dtype=np.int32), per_problem)
    attention = pa.table(
        {
            "problem_id": pa.DictionaryArray.from_arrays(index, pa.array(ids)),
            "layer": layer,
            "head": head,
            "dst": dst,
            "token_pos": pos,
            "weight": np.concatenate(blocks).astype(np.float32),
        }
    )
    return tokens, attention
