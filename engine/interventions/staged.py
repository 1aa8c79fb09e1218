"""All corrupted conditions of a chunk as one staged batch, sharing everything the baseline computed.

A condition on thought Tk changes nothing before step k, so its row has no reason to recompute the
question, BOT or thoughts T0..T(k-1): it joins the batch at step k with its problem's baseline keys
and values (kvcache.py) and the baseline's input for step k. The rows of thought 0 run six
thought steps, those of thought 5 only one (147 row-steps per problem instead of 252). Before its
join a row's attention is, by construction, the baseline's, and is recorded as such.

After EOT the answer is found by speculation: one teacher-forced pass over the baseline's answer
tokens gives every measurement on them (KL at aligned positions) and also tells, for each row,
whether greedy decoding would reproduce the baseline answer token for token (argmax at every forced
position equals the next forced token). Only rows that diverge are decoded greedily, from EOT, one
token at a time; the gold answer is teacher-forced only where it differs from the baseline answer.
"""

from __future__ import annotations

import torch

from engine.interventions.kvcache import StagedCache
from engine.interventions.loop import (
    RowOutcome,
    forced_log_probs,
    sequence_log_prob,
    slice_attention,
    strip_tokens,
)
from engine.interventions.patching import PatchPlan, patched
from engine.model.codi import CodiModel, LoopState
from engine.model.positions import N_THOUGHTS


def run_staged(
    model: CodiModel,
    base_state: LoopState,
    question_point: tuple,
    base: RowOutcome,
    row_problem: torch.Tensor,
    row_thought: torch.Tensor,
    plan: PatchPlan,
    forced: torch.Tensor,
    gold: torch.Tensor,
    capture_attention: bool,
    max_new_tokens: int,
) -> RowOutcome:
    """Rows sorted by target thought (`row_thought` non-decreasing); `row_problem` indexes the baseline rows.

    `base_state`: the baseline's loop state (its cache holds question, BOT, T0..T5, EOT);
    `question_point`: its checkpoint right after the question pass.
    `forced`/`gold`: per-row token ids [R, T] / [R, G], pad-filled.
    """
    if bool((row_thought[1:] < row_thought[:-1]).any()):
        raise ValueError("rows must be sorted by target thought")
    n_rows = len(row_problem)
    question_length, question_mask, first_position = question_point
    question_mask, first_position = question_mask[row_problem], first_position[row_problem]
    width = max(forced.shape[1], gold.shape[1], max_new_tokens)
    cache = StagedCache.allocate(base_state.cache, n_rows, question_length + N_THOUGHTS + 1 + width)
    state = LoopState(cache, question_mask[:0], first_position[:0], base_state.columns)
    attention = _baseline_attention(base, row_problem) if capture_attention else None
    z = base.inputs[:0, :1]
    with patched(model.codi, plan):
        for k in range(N_THOUGHTS):
            joining = (row_thought == k).nonzero()[:, 0]
            if len(joining):
                cache.join(base_state.cache, row_problem[joining], question_length + k)
                z = torch.cat([z, base.inputs[row_problem[joining], k][:, None]])
            active = cache.active
            if active == 0:
                continue
            ones = question_mask.new_ones((active, k))
            state.mask = torch.cat([question_mask[:active], ones], dim=1)
            state.next_position = first_position[:active] + k
            plan.step = k
            out = model.step(state, z, output_hidden_states=True, output_attentions=capture_attention)
            plan.step = None
            if capture_attention:
                attention[:active, :, :, k] = slice_attention(
                    out.attentions, state.columns, k, out.attentions[0].shape[-1]
                )
            z = model.project(out.hidden_states[-1][:, -1:, :])
    if cache.active != n_rows:
        raise ValueError("every row needs a target thought in 0..5")
    eot = model.embed(torch.full((n_rows, 1), model.eot_id, dtype=torch.long, device=z.device))
    out = model.step(state, eot, output_attentions=True)
    last = out.attentions[-1][:, :, -1, :].float()
    if capture_attention:
        attention[:, :, :, N_THOUGHTS] = slice_attention(
            out.attentions, state.columns, N_THOUGHTS, last.shape[-1]
        )
    eot_logits = out.logits[:, -1, :]
    forced_logp = forced_log_probs(model, state, eot_logits, forced)
    tokens, texts = _speculative_answers(
        model, state, eot_logits, forced, forced_logp, base, row_problem, max_new_tokens
    )
    return RowOutcome(
        tokens=tokens,
        texts=texts,
        eot_logp=forced_logp[:, 0],
        forced_logp=forced_logp,
        logp_gold=_gold_log_prob(model, state, eot_logits, forced, forced_logp, gold),
        attention=attention,
        eot_row=last,
        sites=None,
    )


def _baseline_attention(base: RowOutcome, row_problem: torch.Tensor) -> torch.Tensor:
    """Each row starts with its problem's baseline attention; steps from its join on are overwritten."""
    return base.attention[row_problem].clone()


def _speculative_answers(
    model: CodiModel,
    state: LoopState,
    eot_logits: torch.Tensor,
    forced: torch.Tensor,
    forced_logp: torch.Tensor,
    base: RowOutcome,
    row_problem: torch.Tensor,
    max_new_tokens: int,
) -> tuple[list[list[int]], list[str]]:
    """Greedy answers: the baseline's where every argmax agrees with it, else decoded from EOT."""
    valid = forced != model.pad_id
    agrees = ((forced_logp.argmax(-1) == forced) | ~valid).all(-1)
    problems = row_problem.tolist()
    tokens = [base.tokens[p] for p in problems]
    texts = [base.texts[p] for p in problems]
    diverged = (~agrees).nonzero()[:, 0]
    if len(diverged):
        sub = _select(state, diverged, max_new_tokens)
        decoded = model.decode_greedy(sub, eot_logits[diverged], max_new_tokens)
        for row, toks, text in zip(
            diverged.tolist(), strip_tokens(decoded.tolist(), model), model.decode_text(decoded), strict=True
        ):
            tokens[row], texts[row] = toks, text
    return tokens, texts


def _gold_log_prob(
    model: CodiModel,
    state: LoopState,
    eot_logits: torch.Tensor,
    forced: torch.Tensor,
    forced_logp: torch.Tensor,
    gold: torch.Tensor,
) -> torch.Tensor:
    """log P(gold answer) per row, reusing the forced pass where the gold answer is the baseline's."""
    same = _same_tokens(forced, gold, model.pad_id)
    logp = torch.zeros(len(forced), dtype=forced_logp.dtype, device=forced_logp.device)
    if bool(same.any()):
        logp[same] = sequence_log_prob(forced_logp[same], forced[same], model.pad_id)
    other = (~same).nonzero()[:, 0]
    if len(other):
        sub = _select(state, other, gold.shape[1])
        logp[other] = sequence_log_prob(
            forced_log_probs(model, sub, eot_logits[other], gold[other]), gold[other], model.pad_id
        )
    return logp


def _same_tokens(a: torch.Tensor, b: torch.Tensor, pad_id: int) -> torch.Tensor:
    width = max(a.shape[1], b.shape[1])
    a = torch.nn.functional.pad(a, (0, width - a.shape[1]), value=pad_id)
    b = torch.nn.functional.pad(b, (0, width - b.shape[1]), value=pad_id)
    return (a == b).all(-1)


def _select(state: LoopState, rows: torch.Tensor, room: int) -> LoopState:
    """A loop state holding only `rows`, with room for `room` more positions (`state` is unchanged)."""
    return LoopState(
        state.cache.select(rows, room), state.mask[rows], state.next_position[rows], state.columns
    )
