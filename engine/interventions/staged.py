"""All corrupted conditions of a chunk as one staged batch, sharing everything the baseline computed.

A condition on thought Tk changes nothing before step k, so its row has no reason to recompute the
question, BOT or thoughts T0..T(k-1): it joins the batch at step k with its problem's baseline keys
and values (kvcache.py) and the baseline's input for step k. The rows of thought 0 run six
thought steps, those of thought 5 only one (147 row-steps per problem instead of 252). Before its
join a row's attention is, by construction, the baseline's, and is recorded as such.

After EOT (`answer_phase`) one pass feeds the baseline's answer tokens and, where it differs, the gold
answer as two branches over the shared cache; the head is applied a few rows at a time and only
per-position scalars are kept (divergences, log p(gold), whether greedy decoding would reproduce the
baseline answer token for token). Only rows that would not are decoded greedily, from their first
disagreeing position on (the agreeing prefix is already in the cache), one token at a time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from engine.interventions.kvcache import StagedCache
from engine.interventions.loop import (
    EOT_STEP,
    RowOutcome,
    pad_tokens,
    sequence_log_prob,
    slice_attention,
    strip_tokens,
)
from engine.interventions.measures import compare_distributions, log_probs
from engine.interventions.patching import PatchPlan, patched
from engine.model.answer_tokens import number_token_index
from engine.model.codi import CodiModel, LoopState
from engine.model.positions import N_THOUGHTS

# Floats in one [rows, positions, vocab] block of teacher-forced log-probs (32 MB in float32): the answer
# phase makes the log-probs of a few rows at a time and keeps only per-position scalars of them.
ROW_BLOCK_FLOATS = 1 << 23
# Fraction of rows needing the gold answer from which it is fed in the same pass as the baseline answer
GOLD_TOGETHER = 0.75


@dataclass
class Answers:
    """What the answer phase measures for every staged row."""

    tokens: list[list[int]]
    texts: list[str]
    logp_gold: torch.Tensor  # [R]
    divergence: dict[str, torch.Tensor]  # measures.compare_distributions against the row's baseline


def row_blocks(rows: int, positions: int, vocab: int) -> list[slice]:
    """Consecutive row ranges whose [rows, positions, vocab] log-probs hold at most ROW_BLOCK_FLOATS."""
    size = max(1, ROW_BLOCK_FLOATS // max(1, positions * vocab))
    return [slice(start, min(rows, start + size)) for start in range(0, rows, size)]


def answer_phase(
    model: CodiModel,
    state: LoopState,
    eot_logits: torch.Tensor,
    forced: torch.Tensor,
    gold: torch.Tensor,
    base: RowOutcome,
    row_problem: torch.Tensor,
    max_new_tokens: int,
) -> Answers:
    """After EOT: teacher forcing on the baseline answer and on the gold answer, and greedy answers.

    1. One pass feeds both answers as two branches over the shared cache (CodiModel.branches): the
       baseline's answer tokens for every row, the gold answer's for the rows of problems whose gold
       answer differs from the baseline's (the others reuse the first branch). When fewer than
       GOLD_TOGETHER of the rows need the gold answer, only they run it, in a pass of their own after.
    2. The head is applied in row blocks (`row_blocks`); each block's log-probs give the divergence from
       the row's baseline at every position, log p(gold), and whether greedy decoding would reproduce the
       baseline answer (argmax = forced token at every position), then are dropped.
    3. A row that would not is decoded greedily from its first disagreeing position j on: its cache
       already holds the forced tokens before j (the rest of the branch is masked out), so the common
       prefix is not recomputed. Its answer is forced[:j] + the decoded tokens, at most max_new_tokens.
    `state` is left at EOT.
    """
    pad, vocab = model.pad_id, model.base_vocab_size
    rows, width = forced.shape
    assert base.forced_logp is not None  # the baseline rows keep their [P, T, V] log-probs
    number_index = [number_token_index(model, t) for t in base.tokens]
    answer_index = torch.tensor([-1 if i is None else i for i in number_index], device=forced.device)
    answer_index = answer_index[row_problem]
    needs_gold = ~_same_tokens(forced, gold, pad)
    # the gold branch rides in the same pass when most rows need it; else only those rows run it
    # afterwards, on a copy of their cache (a pass costs every row, a copy only the rows copied)
    together = float(needs_gold.float().mean()) >= GOLD_TOGETHER
    feeds = {"forced": forced[:, :-1]}
    if together:
        feeds["gold"] = torch.where(needs_gold[:, None], gold[:, :-1], torch.full_like(gold[:, :-1], pad))
    fed = {name: ids for name, ids in feeds.items() if ids.shape[1]}  # forced first: _greedy_answers
    point = state.checkpoint()
    hidden = dict(zip(fed, model.branches(state, list(fed.values())), strict=True)) if fed else {}
    forced_hidden = hidden.get("forced")
    valid = forced != pad
    parts: dict[str, list[torch.Tensor]] = {}
    logp_gold = torch.empty(rows, dtype=torch.float32, device=forced.device)
    first_wrong = torch.empty(rows, dtype=torch.long, device=forced.device)
    diverged_logits: list[torch.Tensor] = []
    for block in row_blocks(rows, width, vocab):
        logits = eot_logits[block, None, :vocab]
        if forced_hidden is not None:
            logits = torch.cat([logits, model.head(forced_hidden[block])], dim=1)
        logp = log_probs(logits)
        compared = compare_distributions(base.forced_logp[row_problem[block]], logp, answer_index[block])
        for name, value in compared.items():
            parts.setdefault(name, []).append(value)
        wrong = (logp.argmax(-1) != forced[block]) & valid[block]
        first = torch.where(wrong.any(-1), wrong.int().argmax(-1), width)
        first_wrong[block] = first
        off = (first < width).nonzero()[:, 0]
        if len(off):
            diverged_logits.append(logits[off, first[off]])
        logp_gold[block] = sequence_log_prob(logp, forced[block], pad)
    other = needs_gold.nonzero()[:, 0]
    if together and len(other):
        logp_gold[other] = _gold_log_prob(model, eot_logits[other], gold[other], hidden.get("gold"), other)
    tokens, texts = _greedy_answers(
        model, state, point, forced, first_wrong, diverged_logits, base, row_problem, max_new_tokens
    )
    state.restore(point)
    if not together and len(other):
        fed_gold = None
        if gold.shape[1] > 1:
            sub = _select(state, other, gold.shape[1])
            fed_gold = model.step(sub, model.embed(gold[other, :-1]), head=False).last_hidden_state
            _release(sub)
        logp_gold[other] = _gold_log_prob(model, eot_logits[other], gold[other], fed_gold, None)
    divergence = {name: torch.cat(values) for name, values in parts.items()}
    return Answers(tokens, texts, logp_gold, divergence)


def _gold_log_prob(
    model: CodiModel,
    eot_logits: torch.Tensor,
    gold: torch.Tensor,
    hidden: torch.Tensor | None,
    rows: torch.Tensor | None,
) -> torch.Tensor:
    """log P(gold answer) [N] of N rows from their EOT logits and the hidden states after each gold token
    but the last (`hidden[rows]`, or all of `hidden` when rows is None), the head applied in row blocks."""
    out = torch.empty(len(gold), dtype=torch.float32, device=gold.device)
    for block in row_blocks(len(gold), gold.shape[1], model.base_vocab_size):
        logits = eot_logits[block, None, : model.base_vocab_size]
        if hidden is not None and gold.shape[1] > 1:
            fed = hidden[block] if rows is None else hidden[rows[block]]
            logits = torch.cat([logits, model.head(fed)], dim=1)
        out[block] = sequence_log_prob(log_probs(logits), gold[block], model.pad_id)
    return out


def _greedy_answers(
    model: CodiModel,
    state: LoopState,
    point: tuple,
    forced: torch.Tensor,
    first_wrong: torch.Tensor,
    diverged_logits: list[torch.Tensor],
    base: RowOutcome,
    row_problem: torch.Tensor,
    max_new_tokens: int,
) -> tuple[list[list[int]], list[str]]:
    """The baseline's answer where greedy decoding reproduces it; else decoded from the first disagreement.

    `state`'s cache holds EOT's point plus the answer branches (CodiModel.branches, forced branch first).
    """
    problems = row_problem.tolist()
    tokens = [base.tokens[p] for p in problems]
    texts = [base.texts[p] for p in problems]
    width = forced.shape[1]
    diverged = (first_wrong < width).nonzero()[:, 0]
    if not len(diverged):
        return tokens, texts
    length, mask, next_position = point
    j = first_wrong[diverged]
    fed = state.cache.get_seq_length() - length  # the branch columns after EOT
    sub = _select(state, diverged, max_new_tokens)
    kept = torch.arange(fed, device=j.device)[None, :] < j[:, None]  # forced[:j], fed at columns 0..j-1
    sub.mask = torch.cat([mask[diverged], kept.to(mask.dtype)], dim=1)
    sub.next_position = next_position[diverged] + j
    budget = max_new_tokens - int(j.min())
    decoded = model.decode_greedy(sub, torch.cat(diverged_logits), budget)
    _release(sub)
    prefix = forced[diverged]
    answers = [
        (prefix[i, :n].tolist() + row)[:max_new_tokens]
        for i, (n, row) in enumerate(zip(j.tolist(), decoded.tolist(), strict=True))
    ]
    answer_tensor = pad_tokens(answers, model.pad_id, forced.device)
    stripped, decoded_texts = strip_tokens(answer_tensor.tolist(), model), model.decode_text(answer_tensor)
    for row, toks, text in zip(diverged.tolist(), stripped, decoded_texts, strict=True):
        tokens[row], texts[row] = toks, text
    return tokens, texts


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
    thoughts = row_thought.tolist()  # once, on the host: the loop below never waits on the device
    if thoughts != sorted(thoughts):
        raise ValueError("rows must be sorted by the step they join at")
    # a row joins at the first step it differs from the baseline at: a thought step 0..5, or EOT (6: an
    # edge knockout into T5 changes only the EOT query)
    joins = [(bisect.bisect_left(thoughts, k), bisect.bisect_right(thoughts, k)) for k in range(EOT_STEP + 1)]
    n_rows = len(row_problem)
    question_length, question_mask, first_position = question_point
    question_mask, first_position = question_mask[row_problem], first_position[row_problem]
    # after EOT the cache takes both answer branches (answer_phase); decoding runs on copies (`_select`)
    width = forced.shape[1] + gold.shape[1]
    cache = StagedCache.allocate(base_state.cache, n_rows, question_length + N_THOUGHTS + 1 + width)
    state = LoopState(cache, question_mask[:0], first_position[:0], base_state.columns)
    plan.columns = base_state.columns
    attention = _baseline_attention(base, row_problem) if capture_attention else None
    z = base.inputs[:0, :1]
    with patched(model.codi, plan):
        for k in range(EOT_STEP + 1):
            first, end = joins[k]
            if end > first:  # rows are sorted by join step: those joining at step k are one range
                joining = torch.arange(first, end, device=row_problem.device)
                cache.join(base_state.cache, row_problem[joining], question_length + k)
                if k < N_THOUGHTS:
                    z = torch.cat([z, base.inputs[row_problem[joining], k][:, None]])
            active = cache.active
            state.mask = torch.cat([question_mask[:active], question_mask.new_ones((active, k))], dim=1)
            state.next_position = first_position[:active] + k
            if k == EOT_STEP or active == 0:
                continue
            plan.step = k
            out = model.step(state, z, head=False, output_attentions=capture_attention)
            plan.step = None
            if capture_attention:
                attention[:active, :, :, k] = slice_attention(
                    out.attentions, state.columns, k, out.attentions[0].shape[-1]
                )
            z = model.project(out.last_hidden_state[:, -1:, :])
        if cache.active != n_rows:
            raise ValueError("every row needs a join step in 0..6")
        eot = model.embed(torch.full((n_rows, 1), model.eot_id, dtype=torch.long, device=z.device))
        plan.step = EOT_STEP  # only edges act at EOT
        out = model.step(state, eot, output_attentions=True)
        plan.step = None
    last = out.attentions[-1][:, :, -1, :].float()
    if capture_attention:
        attention[:, :, :, N_THOUGHTS] = slice_attention(
            out.attentions, state.columns, N_THOUGHTS, last.shape[-1]
        )
    eot_logits = out.logits[:, -1, :]
    answers = answer_phase(model, state, eot_logits, forced, gold, base, row_problem, max_new_tokens)
    cache.release()  # nothing returned below is a view of it: the next chunk reuses its memory
    return RowOutcome(
        tokens=answers.tokens,
        texts=answers.texts,
        eot_logp=None,
        forced_logp=None,
        logp_gold=answers.logp_gold,
        attention=attention,
        eot_row=last,
        sites=None,
        divergence=answers.divergence,
    )


def _baseline_attention(base: RowOutcome, row_problem: torch.Tensor) -> torch.Tensor:
    """Each row starts with its problem's baseline attention; steps from its join on are overwritten."""
    return base.attention[row_problem].clone()


def _same_tokens(a: torch.Tensor, b: torch.Tensor, pad_id: int) -> torch.Tensor:
    width = max(a.shape[1], b.shape[1])
    a = torch.nn.functional.pad(a, (0, width - a.shape[1]), value=pad_id)
    b = torch.nn.functional.pad(b, (0, width - b.shape[1]), value=pad_id)
    return (a == b).all(-1)


def _release(state: LoopState) -> None:
    """Give a selected cache's memory back for the next selection (`state` must not be used after)."""
    if isinstance(state.cache, StagedCache):
        state.cache.release()


def _select(state: LoopState, rows: torch.Tensor, room: int) -> LoopState:
    """A loop state holding only `rows`, with room for `room` more positions (`state` is unchanged)."""
    return LoopState(
        state.cache.select(rows, room), state.mask[rows], state.next_position[rows], state.columns
    )
