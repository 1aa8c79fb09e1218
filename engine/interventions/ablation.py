"""Student accuracy with every thought zeroed at one layer: `eval`'s check that the thoughts matter.

A model that really reasons in its continuous thoughts loses most of its accuracy when the output of a
middle block is zeroed at T0..T5 at once (one patch plan over all six steps, run through the CODI loop).
"""

from __future__ import annotations

import torch

from engine.interventions.loop import run_rows, start_questions
from engine.interventions.patching import PatchPlan
from engine.model.answers import is_correct, parse_answer
from engine.model.codi import CodiModel
from engine.model.evaluate import accuracy_of, record_field, record_gold
from engine.model.positions import N_THOUGHTS


@torch.no_grad()
def accuracy_with_thoughts_zeroed(
    model: CodiModel, records: list, layer: int | None = None, batch_size: int = 64
) -> float:
    """Student accuracy when the output of block `layer` is zeroed at all six thoughts at once.

    A model that really reasons in its thoughts loses most of its accuracy here.
    """
    layer = model.n_layers // 2 if layer is None else layer
    flags = []
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        rows = torch.arange(len(chunk), device=model.device)
        zeros = torch.zeros(len(chunk), model.codi.config.hidden_size, device=model.device)
        plan = PatchPlan()
        for k in range(N_THOUGHTS):
            plan.add(layer, k, rows, zeros)
        _, state, z = start_questions(model, [record_field(r, "question") for r in chunk])
        no_gold = torch.full((len(chunk), 1), model.pad_id, device=model.device)
        texts = run_rows(model, state, z, plan, None, no_gold, False, None, 32).texts
        golds = [record_gold(r) for r in chunk]
        flags += [is_correct(parse_answer(t), g) for t, g in zip(texts, golds, strict=True)]
    return accuracy_of(flags)
