"""Running every condition of a batch of problems (SPEC 3, 4, 5).

For a chunk of problems:
1. one question pass (left-padded, BOT appended) whose KV cache every row of the chunk shares;
2. the baseline rows: six thoughts, EOT, greedy answer; the clean value at every patch site
   (output of block L at Tk during step k) and the attention of every layer and head are kept;
3. each condition's replacement value h' is computed from those clean values (it never depends on
   the corrupted run itself), then all conditions of all problems run as one batch from the shared
   question cache, a hook overwriting block L's output at Tk during step k only;
4. after EOT, each row is decoded greedily (correctness), teacher-forced on the baseline's answer
   tokens (KL/JS at aligned positions) and on the gold answer (log-probability).
`run_reference` does the same one condition at a time with nothing shared (the research code's way),
for tests and benchmarks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from engine.answers import _NUMBER, is_correct, parse_answer
from engine.conditions import (
    BASELINE,
    Condition,
    choose_donor_problem,
    choose_donor_thought,
    draw_seed,
    gaussian_noise,
)
from engine.measures import attention_disruption, entropy, js_divergence, kl_divergence, log_probs
from engine.model import CodiModel, LoopState
from engine.patching import PatchPlan, patched
from engine.positions import EOT, N_THOUGHTS

N_DST = N_THOUGHTS + 1  # queries T0..T5, EOT
N_SRC = N_THOUGHTS + 3  # keys Q (summed), BOT, T0..T5, EOT
DST_CODES = np.array(list(range(N_THOUGHTS)) + [EOT], dtype=np.int16)
SRC_CODES = np.array([-2, -1, *range(N_THOUGHTS), EOT], dtype=np.int16)
# causally visible (dst, src) pairs: Tk sees Q, BOT, T0..Tk; EOT sees everything
VISIBLE = np.array([[s <= d + 2 for s in range(N_SRC)] for d in range(N_DST)])


@dataclass
class EngineOptions:
    layers: tuple[int, ...]
    conditions: tuple[Condition, ...]
    seed: int = 0
    attention: str = "all"  # all | baseline | none
    noise_scale: str = "absolute"  # absolute | rms
    max_new_tokens: int = 24


@dataclass
class SiteValues:
    """Clean values at the patch sites of one problem: [n_layers_selected, 6, d] (float32, CPU)."""

    problem_id: str
    values: torch.Tensor


@dataclass
class RowOutcome:
    """Everything measured for a set of rows run together (one entry per row)."""

    tokens: list[list[int]]
    texts: list[str]
    eot_logp: torch.Tensor  # [N, V] log-probs at EOT
    forced_logp: torch.Tensor  # [N, T, V] log-probs along the forced (baseline) answer
    logp_gold: torch.Tensor  # [N]
    attention: torch.Tensor | None  # [N, layers, heads, 7, 9]
    eot_row: torch.Tensor  # [N, heads, keys] last-layer EOT attention over all keys (right-aligned)
    sites: torch.Tensor | None  # [N, n_layers_selected, 6, d] clean site values (baseline rows only)


# --- the shared loop ------------------------------------------------------------------------------
def _slice_attention(attentions, columns, dst: int, step_kv: int) -> torch.Tensor:
    """[B, layers, heads, 9] key groups for the single query of this step (NaN where not visible)."""
    att = torch.stack([a[:, :, -1, :] for a in attentions], dim=1).float()  # [B, L, H, kv]
    out = torch.full((*att.shape[:3], N_SRC), float("nan"), device=att.device)
    bot = columns.bot
    out[..., 0] = att[..., :bot].sum(-1)
    out[..., 1] = att[..., bot]
    n_thoughts_visible = min(dst + 1, N_THOUGHTS)
    out[..., 2:2 + n_thoughts_visible] = att[..., bot + 1: bot + 1 + n_thoughts_visible]
    if dst == N_THOUGHTS:
        out[..., N_SRC - 1] = att[..., columns.eot]
    assert step_kv == att.shape[-1]
    return out


def _forced_logp(model: CodiModel, state: LoopState, eot_logits: torch.Tensor,
                 tokens: torch.Tensor) -> torch.Tensor:
    """Log-probs [N, T, V] at EOT and after each forced token but the last (then crop back)."""
    point = state.checkpoint()
    logits = [eot_logits[:, None, :]]
    if tokens.shape[1] > 1:
        out = model.step(state, model.embed(tokens[:, :-1]))
        logits.append(out.logits)
    state.restore(point)
    return log_probs(model.mask_extra_tokens(torch.cat(logits, dim=1)))


def run_rows(model: CodiModel, state: LoopState, z: torch.Tensor, plan: PatchPlan,
             forced: torch.Tensor | None, gold, capture_attention: bool,
             site_layers: tuple[int, ...] | None, max_new_tokens: int) -> RowOutcome:
    """From a state right after the question pass (first thought input `z`): thoughts, EOT, answers.

    `forced`: answer tokens to teacher-force [N, T] (None = the rows' own greedy tokens, for baselines).
    `gold`: gold answer tokens [N, G] (pad-filled; pad positions ignored), or a function of the rows'
    greedy tokens returning them (the baseline's gold string follows its own answer format).
    `site_layers`: record the clean values of these layers' block outputs at each thought.
    """
    columns = state.columns
    attention = [] if capture_attention else None
    sites = [] if site_layers else None
    with patched(model.codi, plan):
        for k in range(N_THOUGHTS):
            plan.step = k
            out = model.step(state, z, output_hidden_states=True, output_attentions=capture_attention)
            plan.step = None
            if capture_attention:
                attention.append(_slice_attention(out.attentions, columns, k, out.attentions[0].shape[-1]))
            if site_layers:
                sites.append(torch.stack([out.hidden_states[layer + 1][:, -1, :] for layer in site_layers], 1))
            z = model.project(out.hidden_states[-1][:, -1:, :])
        eot = model.embed(torch.full((z.shape[0], 1), model.eot_id, dtype=torch.long, device=z.device))
        out = model.step(state, eot, output_attentions=True)
    last = out.attentions[-1][:, :, -1, :].float()  # [N, H, kv] last layer, EOT query
    if capture_attention:
        attention.append(_slice_attention(out.attentions, columns, N_THOUGHTS, last.shape[-1]))
    eot_logits = out.logits[:, -1, :]
    point = state.checkpoint()
    tokens = model.decode_greedy(state, eot_logits, max_new_tokens)
    state.restore(point)
    own = tokens if forced is None else forced
    if callable(gold):
        gold = gold(_strip(tokens.tolist(), model))
    forced_logp = _forced_logp(model, state, eot_logits, own)
    gold_logp = _forced_logp(model, state, eot_logits, gold)
    gold_mask = gold != model.pad_id
    token_logp = gold_logp.gather(-1, gold.clamp(max=gold_logp.shape[-1] - 1)[..., None])[..., 0]
    logp_gold = torch.where(gold_mask, token_logp, torch.zeros_like(token_logp)).sum(-1)
    texts = model.decode_text(tokens)
    return RowOutcome(
        tokens=_strip(tokens.tolist(), model), texts=texts, eot_logp=forced_logp[:, 0], forced_logp=forced_logp,
        logp_gold=logp_gold, attention=torch.stack(attention, dim=3) if capture_attention else None,
        eot_row=last, sites=torch.stack(sites, dim=2).float() if site_layers else None)


def _strip(rows: list[list[int]], model: CodiModel) -> list[list[int]]:
    """Generated tokens up to and including EOS (padding after it removed)."""
    eos = model.tokenizer.eos_token_id
    out = []
    for row in rows:
        row = [t for t in row if t != model.pad_id]
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


# --- answer bookkeeping ---------------------------------------------------------------------------
def number_token_index(model: CodiModel, tokens: list[int]) -> int | None:
    """Index of the token where the parsed answer number starts (None if there is no number)."""
    text = model.tokenizer.decode(tokens, skip_special_tokens=True)
    value = parse_answer(text)
    if value is None:
        return None
    marker = text.rfind("The answer is")
    start = None
    for match in _NUMBER.finditer(text.replace(",", " ")):
        if match.start() >= max(marker, 0):
            start = match.start()
            break
    if start is None:
        return None
    for i in range(len(tokens)):
        if len(model.tokenizer.decode(tokens[: i + 1], skip_special_tokens=True)) > start:
            return i
    return None


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def gold_tokens(model: CodiModel, baseline_tokens: list[int], gold: float) -> list[int]:
    """The gold answer in the model's own answer format (its baseline's text with the number replaced)."""
    idx = number_token_index(model, baseline_tokens)
    if idx is None:
        text = f" The answer is: {format_number(gold)}"
    else:
        prefix = model.tokenizer.decode(baseline_tokens[:idx], skip_special_tokens=True)
        number_piece = model.tokenizer.decode(baseline_tokens[idx: idx + 1], skip_special_tokens=True)
        spacing = number_piece[: len(number_piece) - len(number_piece.lstrip())]
        text = prefix + spacing + format_number(gold)
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _pad(rows: list[list[int]], pad: int, device) -> torch.Tensor:
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


# --- replacement values ---------------------------------------------------------------------------
def replacement(cond: Condition, problem_id: str, layer_index: int, sites: torch.Tensor,
                pool: dict[str, torch.Tensor], opts: EngineOptions) -> tuple[torch.Tensor, str | None, int | None]:
    """h' for one condition, with the donor problem / thought it used (SPEC 3)."""
    h = sites[layer_index, cond.thought]
    seed = draw_seed(opts.seed, problem_id, cond)
    if cond.method == "zero":
        return torch.zeros_like(h), None, None
    if cond.method == "clean":
        return h.clone(), None, None
    if cond.method == "gauss":
        scale = cond.sigma * (h.float().pow(2).mean().sqrt().item() if opts.noise_scale == "rms" else 1.0)
        return h + scale * gaussian_noise(seed, h.shape[-1]).to(h), None, None
    if cond.method == "shuffle":
        j = choose_donor_thought(seed, cond.thought)
        return sites[layer_index, j].clone(), problem_id, j
    if cond.method == "random":
        donor = choose_donor_problem(seed, sorted(pool), problem_id)
        return pool[donor][layer_index, cond.thought].clone(), donor, cond.thought
    if cond.method == "mean":
        return torch.stack([v[layer_index, cond.thought] for v in pool.values()]).mean(0), None, None
    raise ValueError(f"unknown method {cond.method!r}")


# --- one chunk of problems ------------------------------------------------------------------------
@dataclass
class ChunkOutput:
    results: pl.DataFrame
    attention: pa.Table | None
    sites: dict[str, torch.Tensor]  # problem id -> clean site values [n_layers_selected, 6, d]


def start_questions(model: CodiModel, questions: list[str]):
    batch = model.question_batch(questions)
    state, out = model.start(batch)
    return batch, state, model.project(out.hidden_states[-1][:, -1:, :])


def _expand(state: LoopState, z: torch.Tensor, repeats: int, question_point) -> torch.Tensor:
    """Reuse the question's KV cache for `repeats` rows per problem (rows problem-major)."""
    state.restore(question_point)
    if repeats > 1:
        state.cache.batch_repeat_interleave(repeats)
    state.mask = state.mask.repeat_interleave(repeats, 0)
    state.next_position = state.next_position.repeat_interleave(repeats, 0)
    return z.repeat_interleave(repeats, 0)


@torch.no_grad()
def run_chunk(model: CodiModel, problems: list, opts: EngineOptions,
              pool: dict[str, torch.Tensor] | None = None) -> ChunkOutput:
    """All conditions of `problems` (the batched engine). `pool`: donor sites (for random/mean)."""
    _, state, z = start_questions(model, [p.question for p in problems])
    question_point = state.checkpoint()
    base = run_rows(model, state, z, PatchPlan(), None, lambda toks: _gold_batch(model, toks, problems),
                    opts.attention != "none", opts.layers, opts.max_new_tokens)
    corrupt = list(opts.conditions[1:])
    base_gold = [gold_tokens(model, t, p.gold) for t, p in zip(base.tokens, problems)]
    outcome, donors = None, []
    if corrupt:
        plan, donors = build_plan(problems, corrupt, base.sites, pool or {}, opts)
        zc = _expand(state, z, len(corrupt), question_point)
        forced = _pad([t for t in base.tokens for _ in corrupt], model.pad_id, z.device)
        gold = _pad([g for g in base_gold for _ in corrupt], model.pad_id, z.device)
        outcome = run_rows(model, state, zc, plan, forced, gold, opts.attention == "all", None,
                           opts.max_new_tokens)
    return assemble(model, problems, opts, base, outcome, corrupt, donors)


def _gold_batch(model: CodiModel, tokens: list[list[int]], problems: list) -> torch.Tensor:
    return _pad([gold_tokens(model, t, p.gold) for t, p in zip(tokens, problems)], model.pad_id, model.device)


def build_plan(problems: list, corrupt: list[Condition], sites: torch.Tensor, pool: dict[str, torch.Tensor],
               opts: EngineOptions) -> tuple[PatchPlan, list[tuple[str | None, int | None]]]:
    """Rows are problem-major: row = p * len(corrupt) + c."""
    per_site: dict[tuple[int, int], tuple[list[int], list[torch.Tensor]]] = {}
    donors = []
    layer_index = {layer: i for i, layer in enumerate(opts.layers)}
    for p, problem in enumerate(problems):
        for c, cond in enumerate(corrupt):
            value, donor, donor_thought = replacement(cond, problem.problem_id, layer_index[cond.layer],
                                                      sites[p], pool, opts)
            rows, values = per_site.setdefault((cond.layer, cond.thought), ([], []))
            rows.append(p * len(corrupt) + c)
            values.append(value)
            donors.append((donor, donor_thought))
    plan = PatchPlan()
    device = sites.device
    for (layer, step), (rows, values) in per_site.items():
        plan.add(layer, step, torch.tensor(rows, device=device), torch.stack(values).to(device))
    return plan, donors


# --- rows -----------------------------------------------------------------------------------------
RESULT_SCHEMA = {
    "problem_id": pl.Utf8, "condition_id": pl.Int16, "layer": pl.Int16, "thought": pl.Int16, "method": pl.Utf8,
    "sigma": pl.Float64, "donor_problem_id": pl.Utf8, "donor_thought": pl.Int16, "answer_text": pl.Utf8,
    "answer_value": pl.Float64, "correct": pl.Boolean, "flipped": pl.Boolean, "fixed": pl.Boolean,
    "kl_first": pl.Float64, "kl_answer": pl.Float64, "kl_max": pl.Float64, "js_first": pl.Float64,
    "entropy_first": pl.Float64, "logp_gold": pl.Float64, "disruption": pl.Float64,
}


def _finite_or_none(values: torch.Tensor) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.double().cpu().tolist()]


def condition_measures(model: CodiModel, base: RowOutcome, outcome: RowOutcome, row_problem: torch.Tensor,
                       number_index: list[int | None]) -> dict[str, list]:
    """KL/JS/entropy/disruption of each condition row against its problem's baseline."""
    width = outcome.forced_logp.shape[1]
    base_logp = base.forced_logp[row_problem, :width]
    kl = kl_divergence(base_logp, outcome.forced_logp)  # [N, T]
    lengths = torch.tensor([len(t) for t in base.tokens], device=kl.device)[row_problem]
    valid = torch.arange(width, device=kl.device)[None, :] < lengths[:, None]
    kl_max = torch.where(valid, kl, torch.full_like(kl, float("-inf"))).max(-1).values
    idx = torch.tensor([-1 if i is None else i for i in number_index], device=kl.device)[row_problem]
    kl_answer = torch.where(idx >= 0, kl.gather(1, idx.clamp(min=0)[:, None])[:, 0], torch.full_like(kl_max, float("nan")))
    base_row, cond_row = base.eot_row[row_problem], outcome.eot_row
    return {
        "kl_first": _finite_or_none(kl[:, 0]),
        "kl_answer": _finite_or_none(kl_answer),
        "kl_max": _finite_or_none(kl_max),
        "js_first": _finite_or_none(js_divergence(base_logp[:, 0], outcome.forced_logp[:, 0])),
        "entropy_first": _finite_or_none(entropy(outcome.eot_logp)),
        "logp_gold": _finite_or_none(outcome.logp_gold),
        "disruption": _finite_or_none(attention_disruption(base_row, cond_row)),
    }


def assemble(model: CodiModel, problems: list, opts: EngineOptions, base: RowOutcome,
             outcome: RowOutcome | None, corrupt: list[Condition], donors: list) -> ChunkOutput:
    n_problems, n_corrupt = len(problems), len(corrupt)
    base_values = [parse_answer(t) for t in base.texts]
    base_correct = [is_correct(v, p.gold) for v, p in zip(base_values, problems)]
    columns: dict[str, list] = {k: [] for k in RESULT_SCHEMA}
    zeros = [0.0] * n_problems
    baseline_measures = {
        "kl_first": zeros, "kl_answer": zeros, "kl_max": zeros, "js_first": zeros, "disruption": zeros,
        "entropy_first": _finite_or_none(entropy(base.eot_logp)), "logp_gold": _finite_or_none(base.logp_gold),
    }
    for p, problem in enumerate(problems):
        _append_row(columns, problem, Condition(0, BASELINE), (None, None), base.texts[p], base_values[p],
                    base_correct[p], base_correct[p], {k: v[p] for k, v in baseline_measures.items()})
    if outcome is not None:
        row_problem = torch.arange(n_problems, device=outcome.eot_logp.device).repeat_interleave(n_corrupt)
        number_index = [number_token_index(model, t) for t in base.tokens]
        measures = condition_measures(model, base, outcome, row_problem, number_index)
        for row, text in enumerate(outcome.texts):
            p = row // n_corrupt
            value = parse_answer(text)
            _append_row(columns, problems[p], corrupt[row % n_corrupt], donors[row], text, value,
                        is_correct(value, problems[p].gold), base_correct[p], {k: v[row] for k, v in measures.items()})
    results = pl.DataFrame(columns, schema=RESULT_SCHEMA)
    attention = attention_table(problems, base, outcome, corrupt, opts)
    sites = {p.problem_id: base.sites[i] for i, p in enumerate(problems)} if base.sites is not None else {}
    return ChunkOutput(results, attention, sites)


def _append_row(columns, problem, cond: Condition, donor, text, value, correct, base_correct, measures):
    row = {
        "problem_id": problem.problem_id, "condition_id": cond.condition_id, "layer": cond.layer,
        "thought": cond.thought, "method": cond.method, "sigma": cond.sigma, "donor_problem_id": donor[0],
        "donor_thought": donor[1], "answer_text": text,
        "answer_value": value if value is None or math.isfinite(value) else None, "correct": correct,
        "flipped": base_correct and not correct, "fixed": (not base_correct) and correct, **measures,
    }
    for key, val in row.items():
        columns[key].append(val)


def attention_table(problems: list, base: RowOutcome, outcome: RowOutcome | None, corrupt: list[Condition],
                    opts: EngineOptions) -> pa.Table | None:
    """Long-format attention rows built with numpy (no Python loop over rows)."""
    if opts.attention == "none" or base.attention is None:
        return None
    blocks = [base.attention]
    problem_index = [np.arange(len(problems))]
    condition_ids = [np.zeros(len(problems), dtype=np.int16)]
    if opts.attention == "all" and outcome is not None and outcome.attention is not None:
        blocks.append(outcome.attention)
        problem_index.append(np.repeat(np.arange(len(problems)), len(corrupt)))
        condition_ids.append(np.tile(np.array([c.condition_id for c in corrupt], dtype=np.int16), len(problems)))
    weights = torch.cat(blocks).cpu().numpy()  # [R, L, H, 7, 9]
    n_rows, n_layers, n_heads = weights.shape[:3]
    weights = weights[:, :, :, VISIBLE]  # [R, L, H, 42]
    per_head = weights.shape[-1]
    dst = np.broadcast_to(DST_CODES[:, None], VISIBLE.shape)[VISIBLE]
    src = np.broadcast_to(SRC_CODES[None, :], VISIBLE.shape)[VISIBLE]
    per_row = n_layers * n_heads * per_head
    indices = np.repeat(np.concatenate(problem_index).astype(np.int32), per_row)
    return pa.table({
        "problem_id": pa.DictionaryArray.from_arrays(indices, pa.array([p.problem_id for p in problems])),
        "condition_id": np.repeat(np.concatenate(condition_ids), per_row),
        "layer": np.tile(np.repeat(np.arange(n_layers, dtype=np.int16), n_heads * per_head), n_rows),
        "head": np.tile(np.repeat(np.arange(n_heads, dtype=np.int16), per_head), n_rows * n_layers),
        "dst": np.tile(dst, n_rows * n_layers * n_heads),
        "src": np.tile(src, n_rows * n_layers * n_heads),
        "weight": weights.reshape(-1).astype(np.float32),
    })


# --- the sequential reference ---------------------------------------------------------------------
@torch.no_grad()
def run_reference(model: CodiModel, problems: list, opts: EngineOptions,
                  pool: dict[str, torch.Tensor] | None = None) -> ChunkOutput:
    """One condition at a time, batch of one, question recomputed every time (the research code's way)."""
    outputs = []
    for problem in problems:
        _, state, z = start_questions(model, [problem.question])
        base = run_rows(model, state, z, PatchPlan(), None, lambda toks, pr=problem: _gold_batch(model, toks, [pr]),
                        opts.attention != "none", opts.layers, opts.max_new_tokens)
        gold = _pad([gold_tokens(model, base.tokens[0], problem.gold)], model.pad_id, z.device)
        forced = _pad(base.tokens, model.pad_id, z.device)
        rows, donors = [], []
        for cond in opts.conditions[1:]:
            plan, donor = build_plan([problem], [cond], base.sites, pool or {}, opts)
            _, state, z = start_questions(model, [problem.question])
            rows.append(run_rows(model, state, z, plan, forced, gold, opts.attention == "all", None,
                                 opts.max_new_tokens))
            donors.extend(donor)
        outputs.append(assemble(model, [problem], opts, base, _concat(rows), list(opts.conditions[1:]), donors))
    return ChunkOutput(pl.concat([o.results for o in outputs]),
                       pa.concat_tables([o.attention for o in outputs]) if outputs[0].attention is not None else None,
                       {k: v for o in outputs for k, v in o.sites.items()})


def _concat(rows: list[RowOutcome]) -> RowOutcome | None:
    """Stack single-row outcomes (forced log-probs padded to a common width)."""
    if not rows:
        return None
    width = max(r.forced_logp.shape[1] for r in rows)
    forced = torch.cat([torch.nn.functional.pad(r.forced_logp, (0, 0, 0, width - r.forced_logp.shape[1]))
                        for r in rows])
    return RowOutcome(
        tokens=[t for r in rows for t in r.tokens], texts=[t for r in rows for t in r.texts],
        eot_logp=torch.cat([r.eot_logp for r in rows]), forced_logp=forced,
        logp_gold=torch.cat([r.logp_gold for r in rows]),
        attention=torch.cat([r.attention for r in rows]) if rows[0].attention is not None else None,
        eot_row=torch.cat([r.eot_row for r in rows]), sites=None)
