"""Cross-entropy computed only where a label is, through the LM head in chunks (never the full logits).

A causal LM's output layer is `hidden (tokens × H) @ W.T (H × V)`; for Gemma 3, V = 262,144, so the
full logits of one 4 × 256 batch take 1 GiB in fp32 and dominate the step. Most positions carry no
label (prompts, padding), so `labelled_cross_entropy` keeps only the positions whose target is set,
projects them through the head `chunk_tokens` at a time, and computes each chunk's gradient in the
forward pass (as Liger's fused linear cross-entropy and Apple's Cut Cross-Entropy do): at most one
chunk of logits is alive at once, and backward is a scaled copy of gradients already computed.
"""
from __future__ import annotations

import torch

from trainer.chat_template import IGNORE_INDEX


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, softcap: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 logits of one chunk, and tanh(logits / softcap) when the model caps its logits (for the gradient)."""
    logits = (hidden @ weight.T).float()
    if softcap is None:
        return logits, None
    capped = torch.tanh(logits / softcap)
    return capped * softcap, capped


def _chunked_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int,
    softcap: float | None,
    scale: float,
    want_hidden: bool,
    want_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(scaled loss, its gradient for hidden or None, for weight or None), one chunk of logits at a time."""
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if want_hidden else None
    grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
    for start in range(0, hidden.shape[0], chunk_tokens):
        h = hidden[start : start + chunk_tokens]
        t = targets[start : start + chunk_tokens]
        logits, capped = _chunk_logits(h, weight, softcap)
        lse = torch.logsumexp(logits, dim=-1)
        total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
        if not (want_hidden or want_weight):
            continue
        grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place: the logits are not needed any more
        grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
        if capped is not None:
            grad.mul_(1.0 - capped.square())
        grad = grad.mul_(scale).to(h.dtype)
        if want_hidden:
            grad_hidden[start : start + chunk_tokens] = grad @ weight
        if want_weight:
            grad_weight.addmm_(grad.T.float(), h.float())
    return total * scale, grad_hidden, grad_weight


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Sum of token cross-entropies × `scale`; gradients for hidden (and weight, when trainable) made in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens: int, softcap: float | None, scale: float):
        ctx.weight_dtype = weight.dtype
        total, grad_hidden, grad_weight = _chunked_loss(
            hidden, weight, targets, chunk_tokens, softcap, scale, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        dh = grad_hidden * grad_output if grad_hidden is not None else None
        dw = (grad_weight * grad_output).to(ctx.weight_dtype) if grad_weight is not None else None
        return dh, dw, None, None, None, None


def labelled_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_tokens: int,
    softcap: float | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """`scale` × the summed cross-entropy of `hidden @ weight.T` against `targets`, over positions whose target is set.

    `hidden` is (..., H), `targets` the same leading shape, already shifted (the token each position
    predicts) with `IGNORE_INDEX` where there is nothing to learn. Pass `scale = 1 / n_labelled` for the mean.
    """
    flat_targets = targets.reshape(-1)
    keep = (flat_targets != IGNORE_INDEX).nonzero().squeeze(1)
    selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)
    selected_targets = flat_targets.index_select(0, keep)
    if not torch.is_grad_enabled():
        return _chunked_loss(selected, weight, selected_targets, chunk_tokens, softcap, scale, False, False)[0]
    return _ChunkedLinearCrossEntropy.apply(selected, weight, selected_targets, chunk_tokens, softcap, scale)
