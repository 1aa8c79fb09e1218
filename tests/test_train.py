"""A short training run lowers the CODI losses and writes a loadable model directory."""

import pytest
import torch

from engine.model.bundled import load_codi_dir
from engine.model.train import TrainConfig, build_model, codi_losses, encode, train
from ingest.synthetic import MAX_VALUE, generate_split

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

TINY = {
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "prj_dim": 48,
    "batch_size": 16,
    "eval_problems": 12,
    "bf16": False,
}


def test_codi_losses_decrease_on_a_fixed_batch():
    cfg = TrainConfig(**TINY)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    head = torch.nn.Linear(cfg.n_embd, MAX_VALUE + 1)
    batch = [encode(model, r) for r in generate_split(16, seed=3, split="train")]
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=3e-3)
    first = None
    for _ in range(25):
        losses = codi_losses(model, head, batch, with_student=True)
        total = sum(losses.values())
        first = first or {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        total.backward()
        opt.step()
    last = {k: v.item() for k, v in codi_losses(model, head, batch, with_student=True).items()}
    for name in ("teacher", "student", "thought"):
        assert last[name] < 0.7 * first[name], (name, first, last)


def test_train_runs_end_to_end_and_saves(tmp_path):
    cfg = TrainConfig(steps=16, teacher_only_steps=8, eval_every=8, warmup=4, **TINY)
    card = train(cfg, tmp_path / "m", log=lambda _msg: None)
    assert [h["step"] for h in card["history"]] == [8, 16]
    assert card["history"][-1]["teacher"] < card["history"][0]["teacher"]
    assert {"student", "distill", "thought"} <= set(card["history"][-1])
    model = load_codi_dir(tmp_path / "m")
    assert model.codi.config._attn_implementation == "eager"
    assert len(model.answer(["Ann has 3 apples. How many apples does Ann have now?"])) == 1


def test_zeroing_all_thoughts_changes_the_answers(random_codi):
    """The all-thoughts ablation really patches: with a large layer output replaced, answers move."""
    from engine.interventions.ablation import accuracy_with_thoughts_zeroed
    from engine.interventions.loop import run_rows, start_questions
    from engine.interventions.patching import PatchPlan
    from ingest.datasets import synthetic_problems

    problems = synthetic_problems(4, seed=1)
    assert 0.0 <= accuracy_with_thoughts_zeroed(random_codi, problems, layer=2) <= 1.0
    model = random_codi
    plan = PatchPlan()
    rows = torch.arange(1)
    for k in range(6):
        plan.add(2, k, rows, torch.zeros(1, model.codi.config.hidden_size))
    _, state, z = start_questions(model, [problems[0].question])
    with torch.no_grad():
        zeroed = run_rows(model, state, z, plan, None, torch.tensor([[model.pad_id]]), False, None, 6)
        _, state, z = start_questions(model, [problems[0].question])
        clean = run_rows(model, state, z, PatchPlan(), None, torch.tensor([[model.pad_id]]), False, None, 6)
    assert not torch.allclose(zeroed.eot_logp, clean.eot_logp)
