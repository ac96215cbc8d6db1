"""Training loss: KL + a1·CC + a2·SIM (paper eq. 16–19).

Each term works on maps normalised per sample to sum to one (P, G), computed in float32
even under autocast, and averaged over the batch. ``eps`` guards every division and the
logarithm, so all-zero and one-hot maps give finite values and finite gradients:

- eq. (16) KL(P, G) = Σ G · log(eps + G / (P + eps))  (the MIT benchmark's form)
- eq. (17) CC(P, G) = Σ (P−P̄)(G−Ḡ) / √(Σ (P−P̄)² · Σ (G−Ḡ)² + eps)  (on maps divided by
  their mean instead, see :func:`correlation`)
- eq. (18) SIM(P, G) = Σ min(P, G)
- eq. (19) Loss = KL + a1·CC + a2·SIM, with a1 = a2 = −0.1 by default (CC and SIM are
  similarities, so negative weights reward them).

Maps are ``[B, H, W]`` (any trailing shape works: all but the first dimension are summed).
An all-zero map normalises to all zeros (not a uniform map): its CC is 0 and its SIM 0.
"""

from __future__ import annotations

import torch

from avrsp.config import LossConfig


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.float().reshape(x.shape[0], -1)


def normalize_sum(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-sample ``x / (Σx + eps)`` on flattened maps ``[B, N]``."""
    return x / (x.sum(dim=1, keepdim=True) + eps)


def kl_divergence(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Eq. (16), per sample ``[B]``."""
    p, g = normalize_sum(_flat(pred), eps), normalize_sum(_flat(gt), eps)
    return (g * torch.log(eps + g / (p + eps))).sum(dim=1)


def correlation(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Eq. (17), per sample ``[B]``, in [-1, 1].

    CC is scale-invariant, so the maps are divided by their mean rather than their sum:
    at values of order one, ``eps`` stays negligible beside the variance product (with
    sum-normalised 224×384 maps that product is ~1e-10, far below ``eps``, and CC would
    shrink towards 0).
    """
    p, g = _flat(pred), _flat(gt)
    p = p / (p.mean(dim=1, keepdim=True) + eps)
    g = g / (g.mean(dim=1, keepdim=True) + eps)
    p = p - p.mean(dim=1, keepdim=True)
    g = g - g.mean(dim=1, keepdim=True)
    return (p * g).sum(dim=1) / torch.sqrt((p * p).sum(dim=1) * (g * g).sum(dim=1) + eps)


def similarity(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Eq. (18), per sample ``[B]``, in [0, 1]."""
    p, g = normalize_sum(_flat(pred), eps), normalize_sum(_flat(gt), eps)
    return torch.minimum(p, g).sum(dim=1)


def saliency_loss(
    pred: torch.Tensor, gt: torch.Tensor, config: LossConfig | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. (19) averaged over the batch, plus the batch-mean terms (detached) for logging."""
    cfg = config or LossConfig()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(gt.shape)} differ")
    kl = kl_divergence(pred, gt, cfg.eps)
    cc = correlation(pred, gt, cfg.eps)
    sim = similarity(pred, gt, cfg.eps)
    loss = (kl + cfg.a1 * cc + cfg.a2 * sim).mean()
    terms = {"kl": kl.mean().detach(), "cc": cc.mean().detach(), "sim": sim.mean().detach()}
    return loss, terms
