"""Running every condition of a batch of problems (SPEC 3, 4, 5).

For a chunk of problems:
1. one question pass (left-padded, BOT appended) whose KV cache every row of the chunk shares;
2. the baseline rows: six thoughts, EOT, greedy answer; the clean value at every patch site
   (output of block L at Tk during step k) and the attention of every layer and head are kept;
3. each condition's replacement value h' is computed from those clean values (it never depends on
   the corrupted run itself), then all conditions of all problems run as one batch, a hook
   overwriting block L's output at Tk during step k only; a row joins at step k with the baseline's
   cache (question, BOT, T0..T(k-1)) instead of recomputing it (engine/staged.py);
4. after EOT, each row is teacher-forced on the baseline's answer tokens (KL/JS at aligned
   positions) and on the gold answer (log-probability), and its greedy answer found (correctness).
`run_reference` does the same one condition at a time with nothing shared (the research code's way),
for tests and benchmarks.
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import torch

from engine.answer_tokens import gold_tokens
from engine.conditions import Condition, choose_donor_problem, choose_donor_thought, draw_seed, gaussian_noise
from engine.loop import RowOutcome, pad_tokens, run_rows, start_questions
from engine.model import CodiModel, LoopState
from engine.patching import PatchPlan
from engine.rows import ChunkOutput, assemble
from engine.staged import run_staged


@dataclass
class EngineOptions:
    layers: tuple[int, ...]
    conditions: tuple[Condition, ...]
    seed: int = 0
    attention: str = "all"  # all | baseline | none
    noise_scale: str = "absolute"  # absolute | rms
    max_new_tokens: int = 24


# --- replacement values ---------------------------------------------------------------------------
def replacement(cond: Condition, problem_id: str, layer_index: int, sites: torch.Tensor,
                pool: dict[str, torch.Tensor], opts: EngineOptions) -> tuple[torch.Tensor, str | None, int | None]:
    """h' for one condition, with the donor problem / thought it used (SPEC 3).

    zero: 0; clean: h; gauss: h + sigma * s * e, e ~ N(0, I) seeded by the condition, s = 1 (absolute)
    or the RMS of h (`--noise-scale rms`); shuffle: the same problem's clean value at a drawn thought
    j != k; random: a drawn donor problem's clean value at Tk; mean: the mean clean value at Tk over
    the pool's OTHER problems (the target itself is left out).
    """
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
        others = [pid for pid in sorted(pool) if pid != problem_id]  # the target's own value is left out
        if not others:
            raise ValueError(f"`mean` needs a donor pool with a problem other than {problem_id} itself "
                             f"(pool: {', '.join(sorted(pool)) or 'empty'})")
        return torch.stack([pool[pid][layer_index, cond.thought] for pid in others]).mean(0), None, None
    raise ValueError(f"unknown method {cond.method!r}")


# --- one chunk of problems ------------------------------------------------------------------------
@torch.no_grad()
def run_chunk(model: CodiModel, problems: list, opts: EngineOptions,
              pool: dict[str, torch.Tensor] | None = None) -> ChunkOutput:
    """All conditions of `problems` (the batched engine). `pool`: donor sites (for random/mean)."""
    _, state, z = start_questions(model, [p.question for p in problems])
    question_point = state.checkpoint()
    base = run_rows(model, state, z, PatchPlan(), None, lambda toks: _gold_batch(model, toks, problems),
                    opts.attention != "none", opts.layers, opts.max_new_tokens)
    corrupt = list(opts.conditions[1:])
    outcome, donors = None, []
    if corrupt:
        plan, donors = build_plan(problems, corrupt, base.sites, pool or {}, opts)
        outcome = _run_corrupted(model, state, question_point, base, problems, corrupt, plan, opts)
    return assemble(model, problems, opts, base, outcome, corrupt, donors)


def _run_corrupted(model: CodiModel, state: LoopState, question_point: tuple, base: RowOutcome, problems: list,
                   corrupt: list[Condition], plan: PatchPlan, opts: EngineOptions) -> RowOutcome:
    """The condition rows (problem-major, like `plan`), run staged by target thought (engine/staged.py)."""
    device = model.device
    n_corrupt = len(corrupt)
    row_problem = torch.arange(len(problems), device=device).repeat_interleave(n_corrupt)
    row_thought = torch.tensor([c.thought for c in corrupt], device=device).repeat(len(problems))
    order = torch.sort(row_thought, stable=True).indices  # batch row i runs problem-major row order[i]
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=device)
    staged_problem = row_problem[order]
    forced = pad_tokens([base.tokens[p] for p in staged_problem.tolist()], model.pad_id, device)
    gold = base.gold[staged_problem]  # the baseline's gold tokens, in its own answer format
    staged = run_staged(model, state, question_point, base, staged_problem, row_thought[order],
                        plan.remap(position), forced, gold, opts.attention == "all", opts.max_new_tokens)
    return staged.take(position)


def _gold_batch(model: CodiModel, tokens: list[list[int]], problems: list) -> torch.Tensor:
    return pad_tokens([gold_tokens(model, t, p.gold) for t, p in zip(tokens, problems)], model.pad_id, model.device)


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
        gold = base.gold
        forced = pad_tokens(base.tokens, model.pad_id, z.device)
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
