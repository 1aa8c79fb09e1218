"""A short training run lowers the CODI losses and writes a loadable model directory."""
import torch

from engine.bundled import load_codi_dir
from engine.train import TrainConfig, build_model, codi_losses, encode, train
from ingest.synthetic import MAX_VALUE, generate_split

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "prj_dim": 48, "batch_size": 16, "eval_problems": 12, "bf16": False}


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
