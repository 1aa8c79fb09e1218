"""Running every condition of a batch of problems, batched (SPEC 3, 4, 5).

For a chunk of problems:
1. one question pass (left-padded, BOT appended) whose KV cache every row of the chunk shares;
2. the baseline rows: six thoughts, EOT, greedy answer; the clean value at every patch site
   (output of block L at Tk during step k) and the attention of every layer and head are kept;
3. each condition's replacement value h' is computed from those clean values by its method
   (methods.py; it never depends on the corrupted run itself), then all conditions of all problems
   run as one batch, a hook overwriting block L's output at Tk during step k only; a row joins at
   step k with the baseline's cache (question, BOT, T0..T(k-1)) instead of recomputing it (staged.py);
4. after EOT, each row is teacher-forced on the baseline's answer tokens (KL/JS at aligned
   positions) and on the gold answer (log-probability), and its greedy answer found (correctness).
`run_reference` (reference.py) does the same one condition at a time with nothing shared.
"""

from __future__ import annotations

import torch

from engine.interventions.conditions import Condition
from engine.interventions.loop import RowOutcome, pad_tokens, run_rows, start_questions
from engine.interventions.methods import part_condition, part_seed, replacement
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan
from engine.interventions.rows import ChunkOutput, assemble
from engine.interventions.staged import run_staged
from engine.model.answer_tokens import gold_tokens
from engine.model.codi import CodiModel, LoopState


# --- one chunk of problems ------------------------------------------------------------------------
@torch.no_grad()
def run_chunk(
    model: CodiModel, problems: list, opts: EngineOptions, pool: dict[str, torch.Tensor] | None = None
) -> ChunkOutput:
    """All conditions of `problems` (the batched engine). `pool`: donor sites (for random/mean)."""
    _, state, z = start_questions(model, [p.question for p in problems])
    question_point = state.checkpoint()
    base = run_rows(
        model,
        state,
        z,
        PatchPlan(),
        None,
        lambda toks: gold_batch(model, toks, problems),
        opts.attention != "none",
        opts.layers,
        opts.max_new_tokens,
        record=opts.recorded,
        states=opts.reads_states,
        question_attention=opts.attention == "tokens",
    )
    corrupt = list(opts.conditions[1:])
    outcome: RowOutcome | None = None
    donors: list[tuple[str | None, int | None]] = []
    if corrupt:
        plan, donors = build_plan(problems, corrupt, clean_values(base), pool or {}, opts)
        outcome = _run_corrupted(model, state, question_point, base, problems, corrupt, plan, opts)
    return assemble(model, problems, opts, base, outcome, corrupt, donors)


def _run_corrupted(
    model: CodiModel,
    state: LoopState,
    question_point: tuple,
    base: RowOutcome,
    problems: list,
    corrupt: list[Condition],
    plan: PatchPlan,
    opts: EngineOptions,
) -> RowOutcome:
    """The condition rows (problem-major, like `plan`), run staged by target thought (staged.py)."""
    device = model.device
    n_corrupt = len(corrupt)
    row_problem = torch.arange(len(problems), device=device).repeat_interleave(n_corrupt)
    # each row joins the baseline's cache at the first step its condition changes (staged.py)
    row_thought = torch.tensor([c.first_step for c in corrupt], device=device).repeat(len(problems))
    order = torch.sort(row_thought, stable=True).indices  # batch row i runs problem-major row order[i]
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=device)
    staged_problem = row_problem[order]
    forced = pad_tokens([base.tokens[p] for p in staged_problem.tolist()], model.pad_id, device)
    assert base.gold is not None  # run_chunk's baseline pass is given a gold function
    gold = base.gold[staged_problem]  # the baseline's gold tokens, in its own answer format
    staged = run_staged(
        model,
        state,
        question_point,
        base,
        staged_problem,
        row_thought[order],
        plan.remap(position),
        forced,
        gold,
        opts.condition_attention,
        opts.max_new_tokens,
    )
    return staged.take(position)


def gold_batch(model: CodiModel, tokens: list[list[int]], problems: list) -> torch.Tensor:
    """Each problem's gold answer in its baseline's answer format (`tokens`), padded into one tensor."""
    return pad_tokens(
        [gold_tokens(model, t, p.gold) for t, p in zip(tokens, problems, strict=True)],
        model.pad_id,
        model.device,
    )


def clean_values(base: RowOutcome) -> dict[str, torch.Tensor]:
    """The baseline rows' clean values by site: block -> [N, layers, 6, d] (`sites`), and the other sites
    the run records (`others`: attn, mlp, head)."""
    found = dict(base.others or {})
    if base.sites is not None:
        found["block"] = base.sites
    return found


def site_pool(pool: dict, site: str) -> dict[str, torch.Tensor]:
    """The donor pool's clean values at one site: problem id -> [layers, 6, width]. Block outputs are
    keyed by problem id (as they always were), the other sites by (site, problem id)."""
    if site == "block":
        return {k: v for k, v in pool.items() if isinstance(k, str)}
    return {k[1]: v for k, v in pool.items() if isinstance(k, tuple) and k[0] == site}


def build_plan(
    problems: list,
    corrupt: list[Condition],
    sites: torch.Tensor | dict[str, torch.Tensor],
    pool: dict,
    opts: EngineOptions,
) -> tuple[PatchPlan, list[tuple[str | None, int | None]]]:
    """Every condition's replacement values, as one patch plan; rows are problem-major:
    row = p * len(corrupt) + c.

    `sites`: the problems' clean values by site (`clean_values`; a tensor: block outputs only). Each part of a
    condition is applied at each of its steps; a head part writes its head's columns of the output
    projection's input, computed by the method on the whole input and sliced; an edge part names its key
    thought (a `clean` edge part knocks nothing out: the control). A row's donor columns are those of its
    only value, if it has one (else NULL).
    """
    clean = sites if isinstance(sites, dict) else {"block": sites}
    layer_index = {"block": {layer: i for i, layer in enumerate(opts.layers)}}
    for site, layers in opts.recorded.items():
        layer_index[site] = {layer: i for i, layer in enumerate(layers)}
    pools = {site: site_pool(pool, site) for site in ("block", "attn", "mlp", "head")}
    per_key: dict[tuple[str, int | None, int], tuple[list[int], list]] = {}
    donors: list[tuple[str | None, int | None]] = []
    for p, problem in enumerate(problems):
        for c, cond in enumerate(corrupt):
            row = p * len(corrupt) + c
            found: list[tuple[str | None, int | None]] = []
            for index, part in enumerate(cond.parts):
                for step in part.steps:
                    key = (part.site, part.layer, step)
                    if part.site == "edge":
                        if part.method != "clean":  # `clean` knocks nothing out
                            rows, data = per_key.setdefault(key, ([], []))
                            rows.append(row)
                            data.append(part.key)
                        continue
                    assert part.layer is not None  # only edges may name every layer
                    value, donor, donor_thought = replacement(
                        part_condition(cond, part, step),
                        problem.problem_id,
                        layer_index[part.site][part.layer],
                        clean[part.site][p],
                        pools[part.site],
                        opts,
                        seed=part_seed(opts.seed, problem.problem_id, cond, index, step),
                    )
                    found.append((donor, donor_thought))
                    rows, data = per_key.setdefault(key, ([], []))
                    rows.append(row)
                    data.append(value if part.head is None else (part.head, value))
            donors.append(found[0] if len(found) == 1 else (None, None))
    plan = PatchPlan()
    device = next(iter(clean.values())).device if clean else torch.device("cpu")
    for (site, layer, step), (rows, data) in per_key.items():
        at = torch.tensor(rows, device=device)
        if site == "edge":
            plan.add_site(site, layer, step, at, torch.tensor(data, device=device))
        elif site == "head":
            if not opts.n_heads:
                raise ValueError("head ablation needs the model's number of heads (EngineOptions.n_heads)")
            width = data[0][1].shape[-1] // opts.n_heads
            heads = torch.tensor([h for h, _ in data], device=device)
            columns = heads[:, None] * width + torch.arange(width, device=device)[None, :]
            values = torch.stack([v for _, v in data]).to(device).gather(1, columns)
            plan.add_site(site, layer, step, at, columns, values)
        else:
            plan.add_site(site, layer, step, at, torch.stack(data).to(device))
    return plan, donors
