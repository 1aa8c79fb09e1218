"""The CODI module (SPEC 2.1) and its official inference loop (SPEC 2.3), batched.

A CODI model is a causal LM with three extra token ids (pad = V, bot = V+1, eot = V+2) and a
projection `prj` that turns the last hidden state of one step into the input embedding of the next.
Batches are left-padded; the attention mask and explicit position ids travel through every step
(transformers does not derive position ids from the mask).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from engine.model.answers import parse_answer
from engine.model.positions import N_THOUGHTS, ColumnMap


def make_projection(d_model: int, prj_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Sequential(Dropout, Linear(d, p), GELU, Linear(p, d), LayerNorm(d)) with the official key names."""
    prj = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(d_model, prj_dim), nn.GELU(), nn.Linear(prj_dim, d_model)
    )
    prj.add_module("ln", nn.LayerNorm(d_model))
    return prj


@dataclass
class ModelInfo:
    """What a run records about the model it used."""

    name: str
    architecture: str  # "gpt2" | "llama"
    n_layers: int
    n_heads: int
    d_model: int
    weights_path: str = ""
    weights_sha256: str = ""
    extra: dict = field(default_factory=dict)


class CodiModel(nn.Module):
    """Base LM (`codi`) + projection (`prj`), with the extra token ids of the official layout."""

    def __init__(
        self,
        codi: PreTrainedModel,
        prj: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        base_vocab_size: int,
        info: ModelInfo,
    ):
        super().__init__()
        self.codi = codi
        self.prj = prj
        self.tokenizer = tokenizer
        self.base_vocab_size = base_vocab_size
        self.pad_id, self.bot_id, self.eot_id = base_vocab_size, base_vocab_size + 1, base_vocab_size + 2
        self.info = info
        self.prepend_bos = info.architecture == "llama"
        # SDPA for the passes that return no attention weights (kernel()); False: eager everywhere
        self.fused_attention = True

    # -- plumbing ------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.codi.parameters()).device

    @property
    def n_layers(self) -> int:
        return self.codi.config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.codi.config.num_attention_heads

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codi.get_input_embeddings()(ids)

    def project(self, hidden_last: torch.Tensor) -> torch.Tensor:
        return self.prj(hidden_last)

    def encode_question(self, question: str) -> list[int]:
        ids = self.tokenizer(question, add_special_tokens=False)["input_ids"]
        if self.prepend_bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id] + ids
        return ids + [self.bot_id]

    def question_batch(self, questions: list[str]) -> QuestionBatch:
        """Left-padded question ids (each ending in BOT), mask and position ids."""
        return self.pad_questions([self.encode_question(q) for q in questions])

    def pad_questions(self, encoded: list[list[int]]) -> QuestionBatch:
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = 1
        device = self.device
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return QuestionBatch(ids, mask, positions, ColumnMap(width))

    @property
    def body(self) -> nn.Module:
        """The decoder without the LM head (GPT2Model, LlamaModel): what a pass runs when no logits are
        read. Under a PEFT wrapper (the official checkpoints' LoRA, loaded as a reference), the model inside
        it first: PEFT's own `base_model` is its LoRA layer, whose forward is the whole LM."""
        model = self.codi
        inner = getattr(model, "get_base_model", None)
        if callable(inner) and not isinstance(model, PreTrainedModel):
            model = inner()
        return model.base_model

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the base vocabulary only [..., V] from final hidden states (after the final norm).

        The three extra ids (and any row beyond them) are never a prediction of the student: leaving their
        columns out is the same as masking them to -inf before a softmax or an argmax, without the copy.
        """
        return self.codi.get_output_embeddings()(hidden)[..., : self.base_vocab_size]

    @property
    def final_norm(self) -> nn.Module:
        """The norm applied after the last block (GPT-2's ln_f, LLaMA's norm)."""
        body = self.body
        norm = getattr(body, "ln_f", None) or getattr(body, "norm", None)
        if norm is None:
            raise TypeError(f"{type(body).__name__}: no final norm (ln_f or norm) found")
        return norm

    def lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """The logit lens: logits over the base vocabulary [..., V] of any residual-stream vector (a block's
        output or a thought's input), through the model's own final norm and output embedding."""
        return self.head(self.final_norm(hidden))

    @contextlib.contextmanager
    def kernel(self, weights: bool) -> Iterator[None]:
        """Eager attention while a pass must return attention weights, else PyTorch's fused SDPA.

        Only the captured thought steps and the EOT step need weights; the question pass, teacher forcing
        and decoding run fused (the same numbers to float rounding: tests/test_fast_attention.py).
        """
        config = self.codi.config
        before = config._attn_implementation
        wanted = "eager" if weights or not self.fused_attention else "sdpa"
        if wanted != before:
            config._attn_implementation = wanted
        try:
            yield
        finally:
            if wanted != before:
                config._attn_implementation = before

    def mask_extra_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """Greedy decoding never picks pad/bot/eot (nor any row beyond them)."""
        logits = logits.clone()
        logits[..., self.base_vocab_size :] = float("-inf")
        return logits

    def mask_teacher_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """The teacher writes its CoT and then EOT itself; only pad and bot are never chosen."""
        logits = logits.clone()
        logits[..., [self.pad_id, self.bot_id]] = float("-inf")
        return logits

    # -- the official loop ---------------------------------------------------------------------------
    def step(self, state: LoopState, embeds: torch.Tensor, head: bool = True, **kwargs):
        """Feed `embeds` [B, T, d] after everything so far; updates cache, mask and positions.

        `head=False`: no logits, only the final hidden states (`last_hidden_state`, after the final norm:
        what `hidden_states[-1]` holds), for steps whose logits nobody reads (the thoughts, teacher forcing
        that applies the head in row blocks).
        """
        b, t, _ = embeds.shape
        ones = torch.ones((b, t), dtype=state.mask.dtype, device=state.mask.device)
        state.mask = torch.cat([state.mask, ones], dim=1)
        positions = state.next_position[:, None] + torch.arange(t, device=embeds.device)[None, :]
        state.next_position = state.next_position + t
        with self.kernel(bool(kwargs.get("output_attentions"))):
            return (self.codi if head else self.body)(
                inputs_embeds=embeds,
                attention_mask=state.mask,
                position_ids=positions,
                past_key_values=state.cache,
                use_cache=True,
                **kwargs,
            )

    def branches(self, state: LoopState, branches: list[torch.Tensor]) -> list[torch.Tensor]:
        """Several token continuations [B, n_i] of the current point fed in ONE pass over a shared cache.

        Each branch starts at the same position (`state.next_position`) and sees the cache and its own
        earlier tokens only (a block-causal 4-D mask), as if it had been fed alone. Returns each branch's
        final hidden states [B, n_i, d] (no logits: `head` applies them in row blocks). The cache then holds
        every branch's keys and values after the old length (branch after branch); `state` is left as it
        was, so the caller restores the cache (`LoopState.restore`) or masks what it does not keep.
        """
        widths = [b.shape[1] for b in branches]
        ids = torch.cat(branches, dim=1)
        rows, total = ids.shape
        device = ids.device
        steps = [torch.arange(w, device=device) for w in widths]
        positions = state.next_position[:, None] + torch.cat(steps)[None, :]
        own = torch.block_diag(*[torch.ones(w, w, dtype=torch.bool, device=device).tril() for w in widths])
        old = state.mask.bool()[:, None, None, :].expand(rows, 1, total, state.mask.shape[1])
        mask = torch.cat([old, own[None, None].expand(rows, 1, total, total)], dim=-1)
        with self.kernel(False):
            embeds = self.embed(ids)
            if self.codi.config._attn_implementation == "eager":  # eager takes an additive float mask
                low = torch.finfo(embeds.dtype).min
                mask = torch.zeros(mask.shape, dtype=embeds.dtype, device=device).masked_fill(~mask, low)
            out = self.body(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=state.cache,
                use_cache=True,
            )
        return list(out.last_hidden_state.split(widths, dim=1))

    def start(self, batch: QuestionBatch, **kwargs):
        """Question pass (positions 0..Q-1 and BOT at Q) with a fresh KV cache."""
        state = LoopState(DynamicCache(), batch.mask.clone(), batch.positions[:, -1] + 1, batch.columns)
        with self.kernel(bool(kwargs.get("output_attentions"))):
            out = self.codi(
                input_ids=batch.ids,
                attention_mask=batch.mask,
                position_ids=batch.positions,
                past_key_values=state.cache,
                use_cache=True,
                output_hidden_states=True,
                **kwargs,
            )
        return state, out

    @torch.no_grad()
    def latent_loop(self, batch: QuestionBatch) -> tuple[LoopState, torch.Tensor]:
        """Question, BOT and six thoughts; returns the loop state and the EOT step's logits [B, vocab]."""
        state, out = self.start(batch, logits_to_keep=1)
        z = self.project(out.hidden_states[-1][:, -1:, :])
        for _ in range(N_THOUGHTS):
            out = self.step(state, z, head=False)
            z = self.project(out.last_hidden_state[:, -1:, :])
        eot = self.embed(torch.full((z.shape[0], 1), self.eot_id, dtype=torch.long, device=z.device))
        out = self.step(state, eot)
        return state, out.logits[:, -1, :]

    @torch.no_grad()
    def decode_greedy(
        self,
        state: LoopState,
        first_logits: torch.Tensor,
        max_new_tokens: int = 32,
        mask=None,
        context: int | None = None,
    ) -> torch.Tensor:
        """Greedy tokens [B, <=max_new_tokens] from `first_logits` on; rows stop at EOS (then pad).

        `mask` removes the tokens decoding may not choose (default: the three extra tokens). With
        `context` (the model's number of positions), a row also stops when its context is full: its last
        token is kept but never fed, and its padding is fed at the last position (its output unused).
        """
        mask = mask or self.mask_extra_tokens
        eos = self.tokenizer.eos_token_id
        logits = mask(first_logits)
        finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        tokens = []
        for step in range(max_new_tokens):
            nxt = logits.argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad_id), nxt)
            tokens.append(nxt)
            finished = finished | (nxt == eos)
            if context is not None:  # no position left to feed this row's token at
                finished = finished | (state.next_position >= context)
            # on CUDA, asking whether every row is done waits for the device: ask every 8 tokens there
            # (the extra tokens of finished rows are padding, dropped by every caller)
            if (step % 8 == 7 or not finished.is_cuda) and bool(finished.all()):
                break
            if context is not None:
                state.next_position = torch.where(
                    finished, state.next_position.clamp(max=context - 1), state.next_position
                )
            out = self.step(state, self.embed(nxt[:, None]))
            logits = mask(out.logits[:, -1, :])
        return torch.stack(tokens, dim=1)

    def decode_text(self, tokens: torch.Tensor) -> list[str]:
        eos = self.tokenizer.eos_token_id
        texts = []
        for row in tokens.tolist():
            row = [t for t in row if t < self.base_vocab_size]
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    @property
    def context_length(self) -> int | None:
        """Positions the model has (GPT-2 `n_positions`, LLaMA `max_position_embeddings`); None if unset."""
        for name in ("n_positions", "max_position_embeddings"):
            value = getattr(self.codi.config, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    @torch.no_grad()
    def answer(self, questions: list[str], max_new_tokens: int = 32) -> list[str]:
        """The student's answer text for each question (full latent loop, greedy)."""
        state, logits = self.latent_loop(self.question_batch(questions))
        return self.decode_text(self.decode_greedy(state, logits, max_new_tokens))

    @torch.no_grad()
    def teacher_answer(self, questions: list[str], max_new_tokens: int = 128) -> list[str]:
        """The teacher task: explicit CoT decoded greedily after BOT (EOT allowed, then the answer).

        A row whose CoT reaches the end of the model's context stops there (its answer is what it wrote
        so far): eval checks only the student's positions, and a long question leaves the teacher less
        room than its `max_new_tokens`.
        """
        state, out = self.start(self.question_batch(questions), logits_to_keep=1)
        tokens = self.decode_greedy(
            state,
            out.logits[:, -1, :],
            max_new_tokens,
            mask=self.mask_teacher_tokens,
            context=self.context_length,
        )
        return self.decode_text(tokens)

    @torch.no_grad()
    def answer_values(self, questions: list[str], max_new_tokens: int = 32) -> list[float | None]:
        return [parse_answer(t) for t in self.answer(questions, max_new_tokens)]


@dataclass
class QuestionBatch:
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    columns: ColumnMap


@dataclass
class LoopState:
    cache: DynamicCache
    mask: torch.Tensor
    next_position: torch.Tensor
    columns: ColumnMap

    def checkpoint(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Remember this point, to continue differently from it later (`restore`)."""
        return self.cache.get_seq_length(), self.mask, self.next_position

    def restore(self, point: tuple[int, torch.Tensor, torch.Tensor]) -> None:
        """Drop everything fed after `point` (transformers 5: crop takes the number to remove, negated)."""
        length, self.mask, self.next_position = point
        extra = self.cache.get_seq_length() - length
        if extra > 0:
            self.cache.crop(-extra)
