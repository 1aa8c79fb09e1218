"""Peer (a): the seed research code's way, one condition at a time, batch of one, plain transformers.

For every problem, the baseline and then each condition in turn, each from scratch:
1. the question (ending in BOT) in one `model.codi(...)` call with a fresh transformers `DynamicCache`;
2. six thought steps, token by token through that cache, each fed the projection of the previous
   step's last hidden state; for a condition on (layer L, thought k), a forward hook on block L is
   installed for step k only and overwrites that block's output at the new position with h';
3. EOT, then greedy decoding one token at a time until EOS (extra tokens never chosen);
4. attention from a *separate* forward pass over the whole sequence (question, BOT, the six thought
   inputs, EOT) with `output_attentions=True`, the hook overwriting block L's output at Tk's column:
   the research code ran attention separately;
5. teacher-forced passes after EOT (the cache cropped back to EOT each time): the baseline's answer
   tokens (KL/JS/entropy at aligned positions) and the gold answer (log p(gold)).

It shares with the engine only what defines a row (engine/peers/common.py): replacement values
(methods.py), measures (measures.py), answer rules and the result columns. Nothing is skipped: every
column of `run_chunk(...).results`, and the attention of every layer and head at T0..T5 and EOT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

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


@torch.no_grad()
def run_seed_loop(
    model: CodiModel, problems: list, opts: EngineOptions, pool: dict[str, torch.Tensor] | None = None
) -> PeerOutput:
    """Every condition of `problems`, one at a time (rows as `run_chunk`'s). `pool`: donor sites."""
    frames = Frames()
    layer_index = {layer: i for i, layer in enumerate(opts.layers)}
    for problem in problems:
        ids = model.encode_question(problem.question)
        base = _row(model, ids, None, opts.layers, opts.max_new_tokens)
        gold = gold_tokens(model, base.tokens, problem.gold)
        forced = _forced(model, base.cache, base.eot_logits, base.tokens)
        clean = Clean(
            tokens=base.tokens,
            text=base.text,
            forced_logp=forced,
            logp_gold=float(sum_log_prob(_forced(model, base.cache, base.eot_logits, gold), gold)),
            gold=gold,
            eot_row=base.eot_row,
            attention=base.attention,
            sites=base.sites,
        )
        base_correct = is_correct(parse_answer(clean.text), problem.gold)
        frames.add_row(
            problem, opts.conditions[0], (None, None), clean.text, base_correct, clean_measures(model, clean)
        )
        weights = [base.attention] if opts.attention != "none" else []
        for cond in opts.conditions[1:]:
            assert cond.layer is not None and cond.thought is not None
            value, donor, donor_thought = replacement(
                cond, problem.problem_id, layer_index[cond.layer], clean.sites, pool or {}, opts
            )
            patch = (cond.layer, cond.thought, value)
            row = _row(model, ids, patch, (), opts.max_new_tokens)
            logp = _forced(model, row.cache, row.eot_logits, clean.tokens)[None]
            logp_gold = sum_log_prob(_forced(model, row.cache, row.eot_logits, gold), gold)[None]
            measures = condition_measures(model, clean, logp, logp_gold, row.eot_row[None])
            frames.add_row(
                problem,
                cond,
                (donor, donor_thought),
                row.text,
                base_correct,
                {k: v[0] for k, v in measures.items()},
            )
            if opts.condition_attention:
                weights.append(row.attention)
        if weights:
            ids_kept = [c.condition_id for c in opts.conditions[: len(weights)]]
            frames.add_attention(problem.problem_id, ids_kept, torch.stack(weights))
    return frames.output()


@dataclass
class _Run:
    """One row's loop: its cache (cut back to EOT), EOT logits, answer, sites and attention."""

    cache: DynamicCache
    eot_logits: torch.Tensor  # [V]
    tokens: list[int]  # greedy answer, up to and including EOS
    text: str
    eot_row: torch.Tensor  # [H, keys]
    attention: torch.Tensor  # [layers, heads, 7, 9]
    sites: torch.Tensor  # [len(record), 6, d] (empty when nothing is recorded)


def _overwrite(column: int, value: torch.Tensor) -> Hook:
    """A forward hook writing `value` over a block's output at `column` (the patch site)."""

    def hook(_module: nn.Module, _args: object, output: BlockOutput) -> BlockOutput:
        hidden = block_output(output).clone()
        hidden[:, column, :] = value.to(hidden.dtype)
        return with_block_output(output, hidden)

    return hook


def _row(
    model: CodiModel,
    ids: list[int],
    patch: tuple[int, int, torch.Tensor] | None,
    record: tuple[int, ...],
    max_new_tokens: int,
) -> _Run:
    """Question, six thoughts (patched at `patch` = (layer, thought, h')), EOT, greedy answer; then the
    separate attention pass. `record`: layers whose block outputs at each thought are kept (sites)."""
    device = model.device
    layers = blocks(model)
    cache = DynamicCache()
    question = torch.tensor([ids], device=device)
    out = model.codi(input_ids=question, past_key_values=cache, use_cache=True, output_hidden_states=True)
    z = model.prj(out.hidden_states[-1][:, -1:, :])
    inputs, sites = [], []
    for k in range(N_THOUGHTS):
        inputs.append(z)
        seen: dict[int, torch.Tensor] = {}
        handles = []
        if patch is not None and patch[1] == k:
            # prepended: transformers records hidden_states with its own hooks on the blocks
            handles.append(layers[patch[0]].register_forward_hook(_overwrite(-1, patch[2]), prepend=True))
        for layer in record:
            handles.append(layers[layer].register_forward_hook(_recorder(seen, layer)))
        out = model.codi(inputs_embeds=z, past_key_values=cache, use_cache=True, output_hidden_states=True)
        for handle in handles:
            handle.remove()
        if record:
            sites.append(torch.stack([seen[layer] for layer in record]))
        z = model.prj(out.hidden_states[-1][:, -1:, :])
    eot = model.embed(torch.tensor([[model.eot_id]], device=device))
    eot_logits = model.codi(inputs_embeds=eot, past_key_values=cache, use_cache=True).logits[0, -1]
    at_eot = cache.get_seq_length()
    tokens: list[int] = []
    logits = eot_logits
    eos = model.tokenizer.eos_token_id
    while True:
        token = int(masked(model, logits).argmax())
        tokens.append(token)
        if token == eos or len(tokens) == max_new_tokens:
            break
        step = torch.tensor([[token]], device=device)
        logits = model.codi(input_ids=step, past_key_values=cache, use_cache=True).logits[0, -1]
    cache.crop(at_eot - cache.get_seq_length())
    text = model.decode_text(torch.tensor([tokens]))[0]
    # the separate attention pass: the whole sequence at once, patched at Tk's column
    sequence = torch.cat([model.embed(question), *inputs, eot], dim=1)
    prefix = len(ids)
    handles = []
    if patch is not None:
        hook = _overwrite(prefix + patch[1], patch[2])
        handles.append(layers[patch[0]].register_forward_hook(hook, prepend=True))
    attentions = model.codi(inputs_embeds=sequence, use_cache=False, output_attentions=True).attentions
    for handle in handles:
        handle.remove()
    attention = torch.stack(
        [key_groups(attentions, prefix + dst, prefix, dst)[0] for dst in range(N_THOUGHTS + 1)], dim=2
    )  # [layers, heads, 7, 9]
    eot_row = attentions[-1][0, :, prefix + N_THOUGHTS, :].float()
    kept = torch.stack(sites, dim=1).float() if record else torch.empty(0, N_THOUGHTS, 0)
    return _Run(cache, eot_logits, tokens, text, eot_row, attention, kept)


def _recorder(seen: dict[int, torch.Tensor], layer: int) -> Hook:
    def hook(_module: nn.Module, _args: object, output: BlockOutput) -> None:
        seen[layer] = block_output(output)[0, -1, :].detach()

    return hook


def _forced(
    model: CodiModel, cache: DynamicCache, eot_logits: torch.Tensor, tokens: list[int]
) -> torch.Tensor:
    """Log-probs [len(tokens), V] teacher-forcing `tokens` after EOT (the cache is cut back to EOT after)."""
    logits = [eot_logits[None]]
    if len(tokens) > 1:
        at_eot = cache.get_seq_length()
        step = torch.tensor([tokens[:-1]], device=eot_logits.device)
        logits.append(model.codi(input_ids=step, past_key_values=cache, use_cache=True).logits[0])
        cache.crop(at_eot - cache.get_seq_length())
    return log_softmax(model, torch.cat(logits))
