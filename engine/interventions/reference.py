"""The sequential reference: every condition of every problem one at a time, nothing shared (SPEC 3, 4, 5).

This is the research code's way: a batch of one, the question recomputed for every condition, the plain
CODI loop (loop.py) instead of the staged batch. It computes the rows the batched engine (chunk.py)
computes, from the same replacement values (`build_plan`), so tests compare the two and `bench engine`
times them against each other.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import torch

from engine.interventions.chunk import build_plan, clean_values, gold_batch
from engine.interventions.loop import RowOutcome, pad_tokens, run_rows, start_questions
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan
from engine.interventions.rows import ChunkOutput, assemble
from engine.model.codi import CodiModel


@torch.no_grad()
def run_reference(
    model: CodiModel, problems: list, opts: EngineOptions, pool: dict[str, torch.Tensor] | None = None
) -> ChunkOutput:
    """One condition at a time, batch of one, question recomputed every time (the research code's way)."""
    outputs = []
    for problem in problems:
        _, state, z = start_questions(model, [problem.question])
        base = run_rows(
            model,
            state,
            z,
            PatchPlan(),
            None,
            lambda toks, pr=problem: gold_batch(model, toks, [pr]),
            opts.attention != "none",
            opts.layers,
            opts.max_new_tokens,
            record=opts.recorded,
        )
        gold = base.gold
        forced = pad_tokens(base.tokens, model.pad_id, z.device)
        rows, donors = [], []
        for cond in opts.conditions[1:]:
            plan, donor = build_plan([problem], [cond], clean_values(base), pool or {}, opts)
            _, state, z = start_questions(model, [problem.question])
            rows.append(
                run_rows(
                    model, state, z, plan, forced, gold, opts.condition_attention, None, opts.max_new_tokens
                )
            )
            donors.extend(donor)
        outputs.append(
            assemble(model, [problem], opts, base, _concat(rows), list(opts.conditions[1:]), donors)
        )
    return ChunkOutput(
        pl.concat([o.results for o in outputs]),
        pa.concat_tables([o.attention for o in outputs]) if outputs[0].attention is not None else None,
        {k: v for o in outputs for k, v in o.sites.items()},
    )


def _concat(rows: list[RowOutcome]) -> RowOutcome | None:
    """Stack single-row outcomes (forced log-probs padded to a common width)."""
    if not rows:
        return None
    logps = [r.forced_logp for r in rows if r.forced_logp is not None]  # run_rows keeps them
    eot = [r.eot_logp for r in rows if r.eot_logp is not None]
    assert len(logps) == len(eot) == len(rows)
    width = max(f.shape[1] for f in logps)
    forced = torch.cat([torch.nn.functional.pad(f, (0, 0, 0, width - f.shape[1])) for f in logps])
    return RowOutcome(
        tokens=[t for r in rows for t in r.tokens],
        texts=[t for r in rows for t in r.texts],
        eot_logp=torch.cat(eot),
        forced_logp=forced,
        logp_gold=torch.cat([r.logp_gold for r in rows]),
        attention=torch.cat([r.attention for r in rows]) if rows[0].attention is not None else None,
        eot_row=torch.cat([r.eot_row for r in rows]),
        sites=None,
    )
