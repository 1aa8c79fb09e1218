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
from engine.interventions.methods import replacement
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
    )
    corrupt = list(opts.conditions[1:])
    outcome: RowOutcome | None = None
    donors: list[tuple[str | None, int | None]] = []
    if corrupt:
        # corrupt conditions have layers, so opts.layers is non-empty and the baseline recorded sites
        assert base.sites is not None
        plan, donors = build_plan(problems, corrupt, base.sites, pool or {}, opts)
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
    row_thought = torch.tensor([c.thought for c in corrupt], device=device).repeat(len(problems))
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
        opts.attention == "all",
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


def build_plan(
    problems: list,
    corrupt: list[Condition],
    sites: torch.Tensor,
    pool: dict[str, torch.Tensor],
    opts: EngineOptions,
) -> tuple[PatchPlan, list[tuple[str | None, int | None]]]:
    """Every condition's replacement value, as one patch plan; rows are problem-major:
    row = p * len(corrupt) + c."""
    per_site: dict[tuple[int, int], tuple[list[int], list[torch.Tensor]]] = {}
    donors: list[tuple[str | None, int | None]] = []
    layer_index = {layer: i for i, layer in enumerate(opts.layers)}
    for p, problem in enumerate(problems):
        for c, cond in enumerate(corrupt):
            assert cond.layer is not None and cond.thought is not None  # only the baseline lacks them
            value, donor, donor_thought = replacement(
                cond, problem.problem_id, layer_index[cond.layer], sites[p], pool, opts
            )
            rows, values = per_site.setdefault((cond.layer, cond.thought), ([], []))
            rows.append(p * len(corrupt) + c)
            values.append(value)
            donors.append((donor, donor_thought))
    plan = PatchPlan()
    device = sites.device
    for (layer, step), (rows, values) in per_site.items():
        plan.add(layer, step, torch.tensor(rows, device=device), torch.stack(values).to(device))
    return plan, donors
