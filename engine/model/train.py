"""Training a small CODI model from scratch (SPEC 9) on synthetic problems.

Objective per batch (CODI, arXiv 2502.21074):
- teacher CE on question + BOT + explicit CoT (`<<a+b=c>>` ...) + EOT + "The answer is: N",
- student CE on "The answer is: N" after question + BOT + 6 continuous thoughts + EOT,
- smooth-L1 distillation of every layer's hidden state at the position that predicts the answer's
  first digit (student vs detached teacher), each divided by the teacher's std, averaged over layers.

Recipe that made a 1-2M parameter model learn to reason in its thoughts on 2 CPU cores:
- curriculum: teacher alone first (`teacher_only_steps`), then all losses;
- thought supervision (a well-known aid for latent reasoning, e.g. iCoT/Coconut-style stepwise
  targets): a linear probe on each thought's last hidden state predicts the running value after
  step k+1 (the final value once the problem has no more steps). The probe is thrown away; it only
  shapes what the thoughts carry.
Everything is deterministic given the seed (data stream, init, order).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import GPT2Config

from engine.model.bundled import build_gpt2_codi, load_codi_dir, save_codi_dir
from engine.model.codi import CodiModel
from engine.model.evaluate import evaluate_model
from engine.model.positions import N_THOUGHTS
from engine.model.tokenizer import train_tokenizer
from ingest.gsm8k import annotations
from ingest.synthetic import MAX_VALUE, generate, generate_split
from warehouse.vocab import ANSWER_PREFIX


@dataclass
class TrainConfig:
    steps: int = 1800
    batch_size: int = 64
    lr: float = 1.5e-3
    warmup: int = 100
    weight_decay: float = 0.01
    teacher_only_steps: int = 300
    student_weight: float = 1.0
    distill_weight: float = 1.0
    thought_weight: float = 1.0
    n_layer: int = 6
    n_embd: int = 128
    n_head: int = 8
    n_positions: int = 256
    prj_dim: int = 256
    vocab_size: int = 1024
    seed: int = 0
    eval_every: int = 300
    eval_problems: int = 180
    bf16: bool = True
    grad_clip: float = 1.0
    init_from: str | None = None  # continue from a saved model directory (fresh optimizer)


def cot_text(solution: str) -> str:
    return " " + " ".join(f"<<{a}>>" for a in annotations(solution))


def answer_text(value: float) -> str:
    return f"{ANSWER_PREFIX} {int(value) if float(value).is_integer() else value}"


@dataclass
class Encoded:
    question: list[int]  # question ids + BOT
    cot: list[int]
    answer: list[int]  # "The answer is: N" + EOS
    digit_offset: int  # index in `answer` of the first token of the number
    values: list[int]  # running value after each step


def encode(model: CodiModel, record: dict) -> Encoded:
    tok = model.tokenizer
    q = model.encode_question(record["question"])
    cot = tok(cot_text(record["answer"]), add_special_tokens=False)["input_ids"]
    gold = record["values"][-1]
    prefix = tok(ANSWER_PREFIX + " ", add_special_tokens=False)["input_ids"]
    ans = tok(answer_text(gold), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # the number starts right after the prefix's tokens (the trailing space is its own token)
    if not tok.convert_ids_to_tokens(ans[len(prefix)]).lstrip("-").isdigit():
        raise ValueError(f"answer tokenization does not start the number after the prefix: {ans}")
    return Encoded(q, cot, ans, len(prefix), record["values"])


def _pad_right(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def codi_losses(
    model: CodiModel, value_head: torch.nn.Module, batch: list[Encoded], with_student: bool
) -> dict[str, torch.Tensor]:
    """Teacher CE, and when asked the student CE, distillation and thought losses, for one batch."""
    pad = model.pad_id
    # --- teacher: question + BOT + CoT + EOT + answer, right-padded, no left padding needed
    seqs = [e.question + e.cot + [model.eot_id] + e.answer for e in batch]
    ids = _pad_right(seqs, pad)
    labels = torch.full_like(ids, -100)
    teacher_pos = []
    for row, e in enumerate(batch):
        start = len(e.question)
        labels[row, start : len(seqs[row])] = ids[row, start : len(seqs[row])]
        teacher_pos.append(start + len(e.cot) + 1 + e.digit_offset - 1)
    mask = (labels != -100) | (
        torch.arange(ids.shape[1])[None, :] < torch.tensor([len(e.question) for e in batch])[:, None]
    )
    out_t = model.codi(input_ids=ids, attention_mask=mask.long(), output_hidden_states=with_student)
    teacher_ce = F.cross_entropy(out_t.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
    losses = {"teacher": teacher_ce}
    if not with_student:
        return losses

    # --- student: question + BOT + 6 thoughts + EOT + answer
    qb = model.pad_questions([e.question for e in batch])
    state, out = model.start(qb)
    h = out.hidden_states[-1][:, -1:, :]
    thought_states = []
    for _ in range(N_THOUGHTS):
        out = model.step(state, model.project(h), output_hidden_states=True)
        h = out.hidden_states[-1][:, -1:, :]
        thought_states.append(h)
    ans_ids = _pad_right([[model.eot_id] + e.answer for e in batch], pad)
    out_s = model.step(state, model.embed(ans_ids), output_hidden_states=True)
    ans_labels = ans_ids.clone()
    ans_labels[:, 0] = -100
    ans_labels[ans_labels == pad] = -100
    student_ce = F.cross_entropy(out_s.logits[:, :-1].flatten(0, 1).float(), ans_labels[:, 1:].flatten())

    rows = torch.arange(len(batch))
    s_pos = torch.tensor([e.digit_offset for e in batch])  # segment index of the token before the number
    t_pos = torch.tensor(teacher_pos)
    distill = 0.0
    for hs_s, hs_t in zip(out_s.hidden_states, out_t.hidden_states, strict=True):
        target = hs_t[rows, t_pos].detach().float()
        distill = distill + F.smooth_l1_loss(hs_s[rows, s_pos].float(), target) / target.std()
    distill = distill / len(out_s.hidden_states)

    targets = torch.tensor([[e.values[min(k, len(e.values) - 1)] for k in range(N_THOUGHTS)] for e in batch])
    thought_logits = value_head(torch.cat(thought_states, dim=1).float())
    thought_ce = F.cross_entropy(thought_logits.flatten(0, 1), targets.flatten())
    losses.update(student=student_ce, distill=distill, thought=thought_ce)
    return losses


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def build_model(cfg: TrainConfig) -> CodiModel:
    corpus = generate(4000, seed=cfg.seed + 7919)
    texts = [r["question"] + cot_text(r["answer"]) + answer_text(r["values"][-1]) for r in corpus]
    texts += [answer_text(v) for v in range(-MAX_VALUE, MAX_VALUE + 1)]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    base = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return build_gpt2_codi(base, tokenizer, cfg.prj_dim, attn="sdpa")


def train(cfg: TrainConfig, out_dir: str | Path, log=None) -> dict:
    """Train, evaluate periodically on held-out problems, save the model directory; return the card."""
    torch.manual_seed(cfg.seed)
    previous = []
    if cfg.init_from:
        model = load_codi_dir(cfg.init_from)
        model.codi.set_attn_implementation("sdpa")
        card = model.info.extra
        previous = card.get("previous_phases", []) + [
            {k: card[k] for k in ("recipe", "history", "train_wall_seconds")}
        ]
    else:
        model = build_model(cfg)
    model.train()
    value_head = torch.nn.Linear(cfg.n_embd, MAX_VALUE + 1)
    params = list(model.parameters()) + list(value_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    rng = random.Random(cfg.seed)
    heldout = generate_split(cfg.eval_problems, seed=cfg.seed + 104729, split="heldout")
    history, started = [], time.time()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    bar = tqdm(range(cfg.steps), desc="train", file=sys.stderr, dynamic_ncols=True)
    for step in bar:
        records = generate_split(cfg.batch_size, seed=rng.randrange(2**31), split="train")
        batch = [encode(model, r) for r in records]
        with_student = step >= cfg.teacher_only_steps
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            losses = codi_losses(model, value_head, batch, with_student)
        total = losses["teacher"]
        if with_student:
            total = (
                total
                + cfg.student_weight * losses["student"]
                + cfg.distill_weight * losses["distill"]
                + cfg.thought_weight * losses["thought"]
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            model.eval()
            model.codi.set_attn_implementation("eager")
            metrics = evaluate_model(model, heldout)
            model.codi.set_attn_implementation("sdpa")
            model.train()
            entry = {
                "step": step + 1,
                "minutes": round((time.time() - started) / 60, 2),
                **{k: round(v.item(), 4) for k, v in losses.items()},
                **metrics,
            }
            history.append(entry)
            log(json.dumps(entry))
            save_checkpoint(model, cfg, out_dir, history, started, previous)
    return save_checkpoint(model, cfg, out_dir, history, started, previous)


def save_checkpoint(
    model: CodiModel, cfg: TrainConfig, out_dir, history: list, started: float, previous: list
) -> dict:
    wall = round(time.time() - started, 1)
    card = {
        "name": "gpt2-tiny",
        "architecture": "gpt2",
        "recipe": asdict(cfg),
        "objective": __doc__.strip(),
        "train_wall_seconds": wall,
        "total_train_wall_seconds": wall + sum(p["train_wall_seconds"] for p in previous),
        "torch": torch.__version__,
        "history": history,
        "previous_phases": previous,
        "final_eval": history[-1] if history else None,
    }
    model.codi.set_attn_implementation("eager")
    save_codi_dir(model, out_dir, card)
    model.codi.set_attn_implementation("sdpa")
    return card
