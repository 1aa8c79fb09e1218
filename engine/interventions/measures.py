"""Distribution-shift measures (SPEC 4), computed on the device over batches of conditions.

KL is a sum over the vocabulary in nats (never a mean: the research code divided by the vocabulary
size with `batchmean` on a 1-D vector, so its KL was always ~0).
"""

from __future__ import annotations

import torch


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) = sum_v p (log p - log q) over the last axis, from log-probabilities; >= 0.

    NaN where either distribution holds a NaN (a broken baseline or an overflowed corruption), never the
    0 that skipping p = NaN terms would give.
    """
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    broken = torch.isnan(logp).any(-1) | torch.isnan(logq).any(-1)
    return terms.sum(-1).clamp(min=0.0).masked_fill(broken, float("nan"))


def js_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in nats (bounded by ln 2)."""
    logm = torch.logsumexp(torch.stack([logp, logq]), dim=0) - torch.log(torch.tensor(2.0))
    return 0.5 * kl_divergence(logp, logm) + 0.5 * kl_divergence(logq, logm)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in nats; NaN where the distribution itself is NaN (a corruption that overflowed), never 0."""
    p = logp.exp()
    value = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)
    return value.masked_fill(torch.isnan(logp).any(-1), float("nan"))


def attention_disruption(base_row: torch.Tensor, cond_row: torch.Tensor) -> torch.Tensor:
    """L2 distance between head-averaged attention rows [..., heads, keys] (the research definition)."""
    return torch.linalg.vector_norm(base_row.float().mean(-2) - cond_row.float().mean(-2), dim=-1)


def at_position(logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The distributions [N, V] at each row's position `index` [N] of [N, T, V] (NaN where it is -1)."""
    picked = logp.gather(1, index.clamp(min=0)[:, None, None].expand(-1, 1, logp.shape[-1]))[:, 0]
    return picked.masked_fill((index < 0)[:, None], float("nan"))


def compare_distributions(
    base_logp: torch.Tensor, cond_logp: torch.Tensor, answer_index: torch.Tensor
) -> dict[str, torch.Tensor]:
    """A condition's teacher-forced distributions [N, T, V] against its baseline's (row for row).

    kl [N, T]: KL(baseline || condition) at every forced position; js_first / entropy_first at EOT
    (position 0); js_answer / entropy_answer where the answer number is predicted (`answer_index` [N],
    NaN where it is -1). The batched engine calls this on row blocks as the log-probs are made (never
    holding [rows, positions, vocab] for all rows); rows.py calls it on whole outcomes.
    """
    base_answer, cond_answer = at_position(base_logp, answer_index), at_position(cond_logp, answer_index)
    return {
        "kl": kl_divergence(base_logp, cond_logp),
        "js_first": js_divergence(base_logp[:, 0], cond_logp[:, 0]),
        "entropy_first": entropy(cond_logp[:, 0]),
        "js_answer": js_divergence(base_answer, cond_answer),
        "entropy_answer": entropy(cond_answer),
    }
