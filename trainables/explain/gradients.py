"""Input-gradient attributions (ALGORITHMS.md §3.3, §4.5): vanilla gradient and integrated gradients.

Call shape: ``fn(model, x, targets, ...) -> attribution`` with ``x: [B,...]`` (images ``[B,C,H,W]`` in
[0,1] pixel space; normalisation lives in the model) and attributions of the same shape as ``x``.
``score`` picks the scalar per image whose gradient is taken: ``logit_score`` (the class logit, no
softmax; captum ``Saliency`` / the smoothing paper) or ``ce_score`` (the cross-entropy loss; ART's
evaluation IG). ``channel_map`` reduces ``[B,C,H,W]`` attributions to per-pixel ``[B,H,W]`` maps.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IGRule = Literal["trapezoid", "riemann_right"]
Reduce = Literal["sum_abs", "sum", "mean_abs"]


def logit_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, targets[:, None])[:, 0]


def ce_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets, reduction="none")


def input_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, score: Score = logit_score,
                   create_graph: bool = False) -> torch.Tensor:
    """``∂ score(model(x))_b / ∂x_b`` for every image (one forward + one backward for the batch)."""
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        s = score(model(x), targets)
        (g,) = torch.autograd.grad(s.sum(), x, create_graph=create_graph)
    return g


def vanilla_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                     score: Score = logit_score) -> torch.Tensor:
    """Vanilla gradient (saliency) ``∇_x f_c(x)``, raw (signed) and shaped like ``x``."""
    return input_gradient(model, x, targets, score)


def path_points(steps: int, rule: IGRule, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """IG path positions α and quadrature weights (summing to 1).

    ``trapezoid``: α = linspace(0,1,n), weights 1/(n-1) with halves at both ends (captum/Quantus
    ``riemann_trapezoid``); ``riemann_right``: α = (i+1)/n, weights 1/n (ART's attack, §4.5).
    """
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError("integrated gradients: the trapezoid rule needs steps >= 2")
        alphas = torch.linspace(0, 1, steps, device=device, dtype=dtype)
        weights = torch.full((steps,), 1 / (steps - 1), device=device, dtype=dtype)
        weights[[0, -1]] /= 2
    elif rule == "riemann_right":
        alphas = torch.arange(1, steps + 1, device=device, dtype=dtype) / steps
        weights = torch.full((steps,), 1 / steps, device=device, dtype=dtype)
    else:
        raise ValueError(f"unknown IG rule {rule!r}; valid: riemann_right, trapezoid")
    return alphas, weights


def integrated_gradients(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, steps: int = 16,
                         rule: IGRule = "trapezoid", baseline: torch.Tensor | None = None,
                         score: Score = logit_score, create_graph: bool = False,
                         max_batch: int = 1024) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017), zero baseline by default.

    ``IG = (x - x0) ⊙ Σ_i w_i ∇ score(x0 + α_i (x - x0))``. The path points of all images are evaluated
    together, ``max_batch`` images per forward/backward (batched over steps). ``create_graph=True`` keeps
    IG differentiable w.r.t. ``x`` (attribution attacks).
    """
    x0 = torch.zeros_like(x) if baseline is None else baseline
    alphas, weights = path_points(steps, rule, x.device, x.dtype)
    per_chunk = max(1, max_batch // max(1, len(x)))
    total = torch.zeros_like(x)
    for start in range(0, steps, per_chunk):
        a = alphas[start:start + per_chunk]
        view = (-1,) + (1,) * x.dim()
        points = (x0 + a.view(view) * (x - x0)).flatten(0, 1)
        g = input_gradient(model, points, targets.repeat(len(a)), score, create_graph)
        total = total + (weights[start:start + per_chunk].view(view) * g.view(len(a), *x.shape)).sum(0)
    return (x - x0) * total


def channel_map(attr: torch.Tensor, reduce: Reduce = "sum_abs") -> torch.Tensor:
    """``[B,C,H,W] -> [B,H,W]``: ``sum_abs`` = Σ_c |a| (captum Saliency + Quantus channel sum, VG),
    ``sum`` = Σ_c a (Quantus IG), ``mean_abs`` = mean_c |a| (ART)."""
    if reduce == "sum_abs":
        return attr.abs().sum(1)
    if reduce == "sum":
        return attr.sum(1)
    if reduce == "mean_abs":
        return attr.abs().mean(1)
    raise ValueError(f"unknown channel reduction {reduce!r}; valid: mean_abs, sum, sum_abs")


def vg_map(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Vanilla-gradient map ``[B,H,W]`` = Σ_c |∇_x logit| (captum Saliency, abs=True; Quantus sums channels)."""
    return channel_map(vanilla_gradient(model, x, targets), "sum_abs")


def ig_map(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, steps: int = 16,
           rule: IGRule = "trapezoid") -> torch.Tensor:
    """Integrated-gradient map ``[B,H,W]`` = Σ_c IG (Quantus ``explain(method="IntegratedGradients")``)."""
    return channel_map(integrated_gradients(model, x, targets, steps, rule), "sum")
