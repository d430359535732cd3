"""FGSM and PGD (L-inf, L2): one call shape ``attack(model, x, y, ...) -> x_adv``.

``model`` maps pixel-space images ``x: [B,C,H,W]`` in [0,1] to logits ``[B, V]`` (normalisation lives inside
the ``Classifier``), so ε is in [0,1] pixel units as in the papers and in torchattacks / foolbox.

- FGSM (Goodfellow; fgsm-at-gradcam-iou-pets): ``x_adv = clip_[0,1](x + ε·sign(∇_x CE(f(x), y)))``.
- PGD (Madry): from ``x`` (or a random point of the ball), ``steps`` times: ``x ← Π(x + α·dir(∇))`` with
  dir = sign (L-inf) or ∇/‖∇‖₂ (L2), Π = projection onto the ε-ball around the clean image then [0,1].
  The arithmetic is torchattacks' ``PGD`` / ``PGDL2`` step for step, so without random start the images
  agree to float rounding. Default α = 2.5·ε/steps (Madry et al.'s rule).

The loss is the batch-mean cross-entropy, as in torchattacks and Madry's code: sign and L2 directions do not
depend on the scale, and the same reduction keeps the rounding identical (L2 PGD through ReLU networks
amplifies 1-ulp differences over steps).

Speed and safety (``attack_mode``): inside an attack the model's parameters have ``requires_grad`` off (so
autograd never records or computes weight gradients; the caller's ``.grad`` fields are untouched), autocast
is off (attacks run in float32 under AMP), and the batch-norm mode is chosen by ``bn``:
``"keep"`` (the model's current mode: eval during evaluation, train during training as the authors' code
does), ``"eval"`` or ``"train"``; the previous modes are restored afterwards. Under DDP pass the local
module (``unwrap(model)``): attack forwards must not enter DDP's gradient-sync hooks.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from trainables.attacks import norms

BNMode = Literal["keep", "eval", "train"]
Norm = Literal["linf", "l2"]


@contextmanager
def attack_mode(model: nn.Module, x: torch.Tensor, bn: BNMode = "keep"):
    """Parameters frozen, autocast off, grad mode on, BN mode set; everything restored on exit."""
    params = [p for p in model.parameters() if p.requires_grad]
    modes = [(m, m.training) for m in model.modules()]
    for p in params:
        p.requires_grad_(False)
    if bn != "keep":
        model.train(bn == "train")
    try:
        with torch.autocast(x.device.type, enabled=False), torch.enable_grad():
            yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, was in modes:
            m.training = was


def ce_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇_x CE(f(x), y), logits)`` with CE summed (per-image gradients independent of the batch) or
    averaged over the batch; call inside ``attack_mode`` (no parameter gradients)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, y, reduction=reduction)
    (g,) = torch.autograd.grad(loss, x)
    return g, logits.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, bn: BNMode = "keep") -> torch.Tensor:
    """FGSM: ``x: [B,C,H,W]`` in [0,1], labels ``y: [B]`` -> ``x_adv`` in [0,1] with ‖x_adv − x‖∞ ≤ ε."""
    x = x.detach()
    with attack_mode(model, x, bn):
        g, _ = ce_grad(model, x, y, "mean")
    return norms.linf_step(g, eps).add_(x).clamp_(0, 1)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
        alpha: float | None = None, norm: Norm = "linf", random_start: bool = False,
        bn: BNMode = "keep", generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD in L-inf or L2: ``x: [B,C,H,W]`` in [0,1], ``y: [B]`` -> ``x_adv`` in [0,1] within the ε-ball.

    ``alpha`` defaults to 2.5·ε/steps; ``random_start`` draws U(−ε, ε) (L-inf) or torchattacks' L2 start.
    """
    if alpha is None:
        alpha = 2.5 * eps / steps
    step, project = (norms.linf_step, norms.project_linf) if norm == "linf" else (norms.l2_step, norms.project_l2)
    x = x.detach()
    if random_start:
        start = norms.uniform_linf if norm == "linf" else norms.uniform_l2
        adv = start(x, eps, generator)
    else:
        adv = x.clone()
    with attack_mode(model, x, bn):
        for _ in range(steps):
            g, _ = ce_grad(model, adv, y, "mean")
            project(adv.add_(step(g, alpha)), x, eps)
    return adv


def pgd_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **kw) -> torch.Tensor:
    """L2 PGD (``pgd(..., norm="l2")``); ``eps`` is an L2 radius in [0,1] pixel units."""
    return pgd(model, x, y, eps, norm="l2", **kw)
