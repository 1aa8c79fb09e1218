"""The CODI loop for a set of rows, with what every measurement needs (SPEC 2.3, 4, 5).

`run_rows` takes rows from right after the question pass through the six thoughts (a patch plan
may overwrite block L's output at Tk during step k), EOT, greedy decoding and teacher forcing. The
baseline rows of the batched engine, the sequential reference and evaluation use it; the batched
conditions use the staged variant in staged.py, built from the same pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.interventions.measures import log_probs
from engine.interventions.patching import PatchPlan, patched, recording
from engine.model.codi import CodiModel, LoopState
from engine.model.positions import EOT, N_THOUGHTS

N_DST = N_THOUGHTS + 1  # queries T0..T5, EOT
EOT_STEP = N_THOUGHTS  # a patch plan's step during the EOT pass
N_SRC = N_THOUGHTS + 3  # keys Q (summed), BOT, T0..T5, EOT
DST_CODES = np.array(list(range(N_THOUGHTS)) + [EOT], dtype=np.int16)
SRC_CODES = np.array([-2, -1, *range(N_THOUGHTS), EOT], dtype=np.int16)
# causally visible (dst, src) pairs: Tk sees Q, BOT, T0..Tk; EOT sees everything
VISIBLE = np.array([[s <= d + 2 for s in range(N_SRC)] for d in range(N_DST)])


@dataclass
class RowOutcome:
    """Everything measured for a set of rows run together (one entry per row)."""

    tokens: list[list[int]]
    texts: list[str]
    eot_logp: torch.Tensor | None  # [N, V] log-probs at EOT (base vocabulary); None: see `divergence`
    forced_logp: torch.Tensor | None  # [N, T, V] log-probs along the forced (baseline) answer
    logp_gold: torch.Tensor  # [N]
    attention: torch.Tensor | None  # [N, layers, heads, 7, 9]
    eot_row: torch.Tensor  # [N, heads, keys] last-layer EOT attention over all keys (right-aligned)
    sites: torch.Tensor | None  # [N, n_layers_selected, 6, d] clean site values (baseline rows only)
    inputs: torch.Tensor | None = None  # [N, 6, d] what each thought step was fed (z1..z6)
    gold: torch.Tensor | None = None  # [N, G] the gold answer tokens behind logp_gold (pad-filled)
    # measures.compare_distributions against each row's baseline, computed where the log-probs were (in row
    # blocks, staged.py) instead of keeping [N, T, V]; None: rows.py computes them from forced_logp
    divergence: dict[str, torch.Tensor] | None = None
    # the other sites' clean values (baseline rows, when asked): site -> [N, n_layers of that site, 6, width]
    others: dict[str, torch.Tensor] | None = None
    # readouts (baseline rows, when asked; readouts.py): every layer's state at T0..T5 and EOT
    # [N, 7, 1 + layers, d] (layer index 0 = the input fed at the position, i = block i-1's output), and the
    # attention of T0..T5 and EOT to the question's columns [N, layers, heads, 7, question columns]
    states: torch.Tensor | None = None
    question_attention: torch.Tensor | None = None

    def take(self, rows: torch.Tensor) -> RowOutcome:
        """The outcome of `rows`, in that order."""
        index = rows.tolist()

        def pick(t):
            return None if t is None else t[rows.to(t.device)]

        return RowOutcome(
            tokens=[self.tokens[i] for i in index],
            texts=[self.texts[i] for i in index],
            eot_logp=pick(self.eot_logp),
            forced_logp=pick(self.forced_logp),
            logp_gold=pick(self.logp_gold),
            attention=pick(self.attention),
            eot_row=pick(self.eot_row),
            sites=pick(self.sites),
            inputs=pick(self.inputs),
            gold=pick(self.gold),
            divergence=None if self.divergence is None else {k: pick(v) for k, v in self.divergence.items()},
            others=None if self.others is None else {k: pick(v) for k, v in self.others.items()},
            states=pick(self.states),
            question_attention=pick(self.question_attention),
        )


# --- the shared loop ------------------------------------------------------------------------------
def slice_attention(attentions, columns, dst: int, step_kv: int) -> torch.Tensor:
    """[B, layers, heads, 9] key groups for the single query of this step (NaN where not visible)."""
    att = torch.stack([a[:, :, -1, :] for a in attentions], dim=1).float()  # [B, L, H, kv]
    out = torch.full((*att.shape[:3], N_SRC), float("nan"), device=att.device)
    bot = columns.bot
    out[..., 0] = att[..., :bot].sum(-1)
    out[..., 1] = att[..., bot]
    n_thoughts_visible = min(dst + 1, N_THOUGHTS)
    out[..., 2 : 2 + n_thoughts_visible] = att[..., bot + 1 : bot + 1 + n_thoughts_visible]
    if dst == N_THOUGHTS:
        out[..., N_SRC - 1] = att[..., columns.eot]
    assert step_kv == att.shape[-1]
    return out


def forced_log_probs(
    model: CodiModel, state: LoopState, eot_logits: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Log-probs [N, T, V] over the base vocabulary (the extra ids never predicted: CodiModel.head) at EOT
    and after each forced token but the last (then crop back)."""
    point = state.checkpoint()
    logits = [eot_logits[:, None, : model.base_vocab_size]]
    if tokens.shape[1] > 1:
        out = model.step(state, model.embed(tokens[:, :-1]), head=False)
        logits.append(model.head(out.last_hidden_state))
    state.restore(point)
    return log_probs(torch.cat(logits, dim=1))


def run_rows(
    model: CodiModel,
    state: LoopState,
    z: torch.Tensor,
    plan: PatchPlan,
    forced: torch.Tensor | None,
    gold,
    capture_attention: bool,
    site_layers: tuple[int, ...] | None,
    max_new_tokens: int,
    record: dict[str, tuple[int, ...]] | None = None,
    states: bool = False,
    question_attention: bool = False,
) -> RowOutcome:
    """From a state right after the question pass (first thought input `z`): thoughts, EOT, answers.

    `forced`: answer tokens to teacher-force [N, T] (None = the rows' own greedy tokens, for baselines).
    `gold`: gold answer tokens [N, G] (pad-filled; pad positions ignored), or a function of the rows'
    greedy tokens returning them (the baseline's gold string follows its own answer format).
    `site_layers`: record the clean values of these layers' block outputs at each thought; `record`: the
    other sites' (site -> layers; patching.recording). `states`: keep every layer's state at T0..T5 and EOT
    (RowOutcome.states); `question_attention`: keep their attention to each question column (needs
    `capture_attention`).
    """
    columns = state.columns
    plan.columns = columns
    attention = [] if capture_attention else None
    sites = [] if site_layers else None
    record = {site: layers for site, layers in (record or {}).items() if layers}
    others: dict[str, list[torch.Tensor]] = {site: [] for site in record}
    inputs = []
    every_layer = tuple(range(model.n_layers)) if states else ()
    state_steps: list[torch.Tensor] = []
    question_steps: list[torch.Tensor] = []

    def read_step(fed: torch.Tensor, attentions) -> None:
        if states:  # [N, 1 + layers, d]: the input, then each block's output at the newest position
            state_steps.append(torch.stack([fed, *(block_out[layer] for layer in every_layer)], 1).float())
        if question_attention:  # [N, layers, heads, question columns] (pad columns hold 0)
            question_steps.append(torch.stack([a[:, :, -1, : columns.bot] for a in attentions], 1).float())

    recorded = tuple(sorted(set(site_layers or ()) | set(every_layer)))
    with patched(model.codi, plan), recording(model.codi, recorded, record) as block_out:
        for k in range(N_THOUGHTS):
            inputs.append(z[:, 0])
            plan.step = k
            out = model.step(state, z, head=False, output_attentions=capture_attention)
            plan.step = None
            read_step(z[:, 0], out.attentions)
            if capture_attention:
                attention.append(slice_attention(out.attentions, columns, k, out.attentions[0].shape[-1]))
            if site_layers:  # the blocks' own outputs (last_hidden_state is the final norm's output)
                sites.append(torch.stack([block_out[layer] for layer in site_layers], 1))
            for site, layers in record.items():
                others[site].append(torch.stack([block_out[(site, layer)] for layer in layers], 1))
            z = model.project(out.last_hidden_state[:, -1:, :])
        eot = model.embed(torch.full((z.shape[0], 1), model.eot_id, dtype=torch.long, device=z.device))
        plan.step = EOT_STEP  # only edges act at EOT
        out = model.step(state, eot, output_attentions=True)
        plan.step = None
        read_step(eot[:, 0], out.attentions)
    last = out.attentions[-1][:, :, -1, :].float()  # [N, H, kv] last layer, EOT query
    if capture_attention:
        attention.append(slice_attention(out.attentions, columns, N_THOUGHTS, last.shape[-1]))
    eot_logits = out.logits[:, -1, :]
    point = state.checkpoint()
    tokens = model.decode_greedy(state, eot_logits, max_new_tokens)
    state.restore(point)
    own = tokens if forced is None else forced
    if callable(gold):
        gold = gold(strip_tokens(tokens.tolist(), model))
    forced_logp = forced_log_probs(model, state, eot_logits, own)
    logp_gold = sequence_log_prob(forced_log_probs(model, state, eot_logits, gold), gold, model.pad_id)
    texts = model.decode_text(tokens)
    return RowOutcome(
        tokens=strip_tokens(tokens.tolist(), model),
        texts=texts,
        eot_logp=forced_logp[:, 0],
        forced_logp=forced_logp,
        logp_gold=logp_gold,
        attention=torch.stack(attention, dim=3) if capture_attention else None,
        eot_row=last,
        sites=torch.stack(sites, dim=2).float() if site_layers else None,
        inputs=torch.stack(inputs, dim=1),
        gold=gold,
        others={site: torch.stack(values, dim=2).float() for site, values in others.items()} or None,
        states=torch.stack(state_steps, 1) if states else None,
        question_attention=torch.stack(question_steps, 3) if question_attention else None,
    )


def sequence_log_prob(logp: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """log P(tokens) per row [N] from teacher-forced log-probs [N, T, V] (pad positions ignored)."""
    token_logp = logp.gather(-1, tokens.clamp(max=logp.shape[-1] - 1)[..., None])[..., 0]
    return torch.where(tokens != pad_id, token_logp, torch.zeros_like(token_logp)).sum(-1)


def strip_tokens(rows: list[list[int]], model: CodiModel) -> list[list[int]]:
    """Generated tokens up to and including EOS (padding after it removed)."""
    eos = model.tokenizer.eos_token_id
    out = []
    for row in rows:
        row = [t for t in row if t != model.pad_id]
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def pad_tokens(rows: list[list[int]], pad: int, device) -> torch.Tensor:
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def start_questions(model: CodiModel, questions: list[str]):
    batch = model.question_batch(questions)
    state, out = model.start(batch, logits_to_keep=1)
    return batch, state, model.project(out.hidden_states[-1][:, -1:, :])
