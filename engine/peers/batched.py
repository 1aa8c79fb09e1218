"""Peer (b): what a careful user of plain transformers (or nnsight) writes, batched per problem.

For every problem:
1. the clean baseline, one row: question (ending in BOT) through a transformers `DynamicCache`, six
   thought steps (each fed the projection of the previous step's last hidden state), EOT, greedy
   decoding; forward hooks record block L's output at each thought (the sites the methods read), and
   the attention of every layer and head is captured in the same passes (eager attention);
2. the condition rows stacked in ONE batch: the question repeated once per condition (one question, so
   no padding), the same loop with a row-indexed forward hook on block L: at step k, the rows of the
   conditions on thought k get their own h' at the new position; attention captured in the same passes;
   batched greedy decoding with an EOS-finished mask (finished rows are fed the pad token, unused);
3. teacher forcing after EOT (the cache cut back to EOT each time) on the baseline's answer tokens
   (KL/JS/entropy at aligned positions) and on the gold answer (log p(gold)).

It does not use the engine's batching (the staged cache, rows joining at their thought, speculative
answers, several problems per batch): each problem's condition rows run every step from the question
on. It shares only what defines a row (engine/peers/common.py). Nothing is skipped: every column of
`run_chunk(...).results`, and the attention of every layer and head at T0..T5 and EOT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from engine.interventions.conditions import Condition
from engine.interventions.methods import replacement
from engine.interventions.options import EngineOptions
from engine.model.answer_tokens import gold_tokens
from engine.model.answers import is_correct, parse_answer
from engine.model.codi import CodiModel
from engine.model.positions import N_THOUGHTS
from engine.peers.common import (
    BlockOutput,
    Clean,
    Frames,
    Hook,
    PeerOutput,
    Problem,
    block_output,
    blocks,
    clean_measures,
    condition_measures,
    key_groups,
    log_softmax,
    masked,
    sum_log_prob,
    with_block_output,
)

SKIPPED: tuple[str, ...] = ()  # measurements this peer does not compute: none

# layer -> thought step -> (batch rows, their h' [rows, d])
Patches = dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]]


@torch.no_grad()
def run_batched_peer(
    model: CodiModel, problems: list, opts: EngineOptions, pool: dict[str, torch.Tensor] | None = None
) -> PeerOutput:
    """Every condition of `problems`: per problem the baseline, then its conditions as one batch."""
    frames = Frames()
    corrupt = list(opts.conditions[1:])
    for problem in problems:
        ids = model.encode_question(problem.question)
        base = _run(model, ids, 1, {}, opts.layers, opts.attention != "none", opts.max_new_tokens)
        tokens = base.tokens[0]
        gold = gold_tokens(model, tokens, problem.gold)
        clean = Clean(
            tokens=tokens,
            text=base.texts[0],
            forced_logp=_forced(model, base, tokens)[0],
            logp_gold=float(sum_log_prob(_forced(model, base, gold)[0], gold)),
            gold=gold,
            eot_row=base.eot_row[0],
            attention=None if base.attention is None else base.attention[0],
            sites=base.sites,
        )
        base_correct = is_correct(parse_answer(clean.text), problem.gold)
        frames.add_row(
            problem, opts.conditions[0], (None, None), clean.text, base_correct, clean_measures(model, clean)
        )
        weights = [] if clean.attention is None else [clean.attention[None]]
        if corrupt:
            patches, donors = _patches(problem, corrupt, clean.sites, pool or {}, opts)
            rows = _run(model, ids, len(corrupt), patches, (), opts.condition_attention, opts.max_new_tokens)
            measures = condition_measures(
                model,
                clean,
                _forced(model, rows, clean.tokens),
                sum_log_prob(_forced(model, rows, gold), gold),
                rows.eot_row,
            )
            for r, cond in enumerate(corrupt):
                own = {name: values[r] for name, values in measures.items()}
                frames.add_row(problem, cond, donors[r], rows.texts[r], base_correct, own)
            if rows.attention is not None:
                weights.append(rows.attention)
        if weights:
            stacked = torch.cat(weights)
            kept = [c.condition_id for c in opts.conditions[: len(stacked)]]
            frames.add_attention(problem.problem_id, kept, stacked)
    return frames.output()


def _patches(
    problem: Problem,
    corrupt: list[Condition],
    sites: torch.Tensor,
    pool: dict[str, torch.Tensor],
    opts: EngineOptions,
) -> tuple[Patches, list[tuple[str | None, int | None]]]:
    """Each condition's h' (row r = condition r), grouped by layer and thought; and its donor."""
    layer_index = {layer: i for i, layer in enumerate(opts.layers)}
    grouped: dict[int, dict[int, tuple[list[int], list[torch.Tensor]]]] = {}
    donors = []
    for r, cond in enumerate(corrupt):
        assert cond.layer is not None and cond.thought is not None
        value, donor, donor_thought = replacement(
            cond, problem.problem_id, layer_index[cond.layer], sites, pool, opts
        )
        rows, values = grouped.setdefault(cond.layer, {}).setdefault(cond.thought, ([], []))
        rows.append(r)
        values.append(value)
        donors.append((donor, donor_thought))
    device = sites.device
    patches = {
        layer: {
            k: (torch.tensor(rows, device=device), torch.stack(values)) for k, (rows, values) in steps.items()
        }
        for layer, steps in grouped.items()
    }
    return patches, donors


@dataclass
class _Batch:
    """Rows run together: the cache (cut back to EOT), EOT logits, answers, attention, sites (row 0)."""

    cache: DynamicCache
    eot_logits: torch.Tensor  # [R, V]
    tokens: list[list[int]]  # greedy answers, up to and including EOS
    texts: list[str]
    eot_row: torch.Tensor  # [R, H, keys]
    attention: torch.Tensor | None  # [R, layers, heads, 7, 9]
    sites: torch.Tensor  # [len(record), 6, d] of row 0 (empty when nothing is recorded)


def _run(
    model: CodiModel,
    ids: list[int],
    n_rows: int,
    patches: Patches,
    record: tuple[int, ...],
    capture_attention: bool,
    max_new_tokens: int,
) -> _Batch:
    """`n_rows` copies of one question through the CODI loop, patched per row by `patches`."""
    device = model.device
    layers = blocks(model)
    step: list[int | None] = [None]  # the thought step being computed (read by the hooks)
    seen: dict[int, torch.Tensor] = {}
    handles = [
        layers[layer].register_forward_hook(_row_patch(step, by_step), prepend=True)
        for layer, by_step in patches.items()
    ]  # prepended: transformers records hidden_states with its own hooks on the blocks
    handles += [layers[layer].register_forward_hook(_recorder(seen, layer)) for layer in record]
    cache = DynamicCache()
    question = torch.tensor([ids], device=device).expand(n_rows, -1)
    attention = []
    sites = []
    try:
        out = model.codi(input_ids=question, past_key_values=cache, use_cache=True, output_hidden_states=True)
        z = model.prj(out.hidden_states[-1][:, -1:, :])
        for k in range(N_THOUGHTS):
            step[0] = k
            out = model.codi(
                inputs_embeds=z,
                past_key_values=cache,
                use_cache=True,
                output_hidden_states=True,
                output_attentions=capture_attention,
            )
            step[0] = None
            if capture_attention:
                attention.append(key_groups(out.attentions, -1, len(ids), k))
            if record:
                sites.append(torch.stack([seen[layer][0] for layer in record]))
            z = model.prj(out.hidden_states[-1][:, -1:, :])
    finally:
        for handle in handles:
            handle.remove()
    eot = model.embed(torch.full((n_rows, 1), model.eot_id, device=device))
    out = model.codi(inputs_embeds=eot, past_key_values=cache, use_cache=True, output_attentions=True)
    if capture_attention:
        attention.append(key_groups(out.attentions, -1, len(ids), N_THOUGHTS))
    eot_row = out.attentions[-1][:, :, -1, :].float()
    eot_logits = out.logits[:, -1, :]
    at_eot = cache.get_seq_length()
    tokens = _greedy(model, cache, eot_logits, max_new_tokens)
    cache.crop(at_eot - cache.get_seq_length())
    eos = model.tokenizer.eos_token_id
    answers = []
    for row in tokens.tolist():
        row = [t for t in row if t != model.pad_id]
        answers.append(row[: row.index(eos) + 1] if eos in row else row)
    return _Batch(
        cache,
        eot_logits,
        answers,
        model.decode_text(tokens),
        eot_row,
        torch.stack(attention, dim=3) if capture_attention else None,
        torch.stack(sites, dim=1).float() if record else torch.empty(0, N_THOUGHTS, 0),
    )


def _greedy(model: CodiModel, cache: DynamicCache, logits: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """[R, <= max_new_tokens] greedy tokens from `logits` on; a row is fed pad once it has said EOS."""
    eos = model.tokenizer.eos_token_id
    finished = torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
    tokens = []
    while True:
        token = masked(model, logits).argmax(-1)
        token = torch.where(finished, torch.full_like(token, model.pad_id), token)
        tokens.append(token)
        finished = finished | (token == eos)
        if bool(finished.all()) or len(tokens) == max_new_tokens:
            return torch.stack(tokens, dim=1)
        logits = model.codi(input_ids=token[:, None], past_key_values=cache, use_cache=True).logits[:, -1]


def _forced(model: CodiModel, batch: _Batch, tokens: list[int]) -> torch.Tensor:
    """Log-probs [R, len(tokens), V] teacher-forcing `tokens` in every row after EOT (the cache is cut
    back to EOT after)."""
    logits = [batch.eot_logits[:, None]]
    if len(tokens) > 1:
        cache = batch.cache
        at_eot = cache.get_seq_length()
        forced = torch.tensor([tokens[:-1]], device=batch.eot_logits.device).expand(len(batch.eot_logits), -1)
        logits.append(model.codi(input_ids=forced, past_key_values=cache, use_cache=True).logits)
        cache.crop(at_eot - cache.get_seq_length())
    return log_softmax(model, torch.cat(logits, dim=1))


def _row_patch(step: list[int | None], by_step: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> Hook:
    """A forward hook: at thought step k, the block's output of row rows[i] at the new position becomes
    values[i]."""

    def hook(_module: nn.Module, _args: object, output: BlockOutput) -> BlockOutput:
        if step[0] not in by_step:
            return output
        rows, values = by_step[step[0]]
        hidden = block_output(output).clone()
        hidden[rows, -1, :] = values.to(hidden.dtype)
        return with_block_output(output, hidden)

    return hook


def _recorder(seen: dict[int, torch.Tensor], layer: int) -> Hook:
    def hook(_module: nn.Module, _args: object, output: BlockOutput) -> None:
        seen[layer] = block_output(output)[:, -1, :].detach()

    return hook
