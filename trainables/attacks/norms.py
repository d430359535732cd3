"""Norms, projections and step directions of the attack families (pixel space, ``x: [B, ...]``).

All functions are batched over the first dimension and work for any trailing shape. Distances follow the
papers: L-inf and L2 in [0,1] pixel units (torchattacks / foolbox convention), and **RMSE**
= ‖δ‖₂ / √(#elements per image) for the Lipschitz paper's attacks (ALGORITHMS.md §5.2).
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def per_image(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a ``[B]`` vector so it broadcasts against ``like: [B, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def l2_norm(t: Tensor) -> Tensor:
    """``[B, ...] -> [B]``: per-image Euclidean norm."""
    return t.flatten(1).norm(p=2, dim=1)


def rmse(t: Tensor) -> Tensor:
    """``[B, ...] -> [B]``: per-image root-mean-square, ‖δ‖₂/√N (the Lipschitz paper's distance)."""
    return t.flatten(1).pow(2).mean(1).sqrt()


def linf_step(grad: Tensor, alpha: float) -> Tensor:
    """FGSM / L-inf PGD step α·sign(∇) (in place on ``grad``)."""
    return grad.sign_().mul_(alpha)


def l2_step(grad: Tensor, alpha: float, tiny: float = 1e-10) -> Tensor:
    """L2 PGD step α·∇/(‖∇‖₂ + tiny) per image (torchattacks' ``eps_for_division`` = 1e-10; same op order)."""
    return grad.div_(per_image(l2_norm(grad) + tiny, grad)).mul_(alpha)


def rmse_direction(d: Tensor, tiny: float = 1e-8) -> Tensor:
    """``d`` scaled to unit RMSE per image (the authors' ``sdir /= 1e-8 + rms(sdir)``); zero stays zero."""
    return d / per_image(rmse(d) + tiny, d)


def project_linf(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """In place: ``adv ← clip_[0,1](x + clip(adv − x, −ε, ε))`` (the torchattacks order of operations)."""
    return adv.sub_(x).clamp_(-eps, eps).add_(x).clamp_(0, 1)


def project_l2(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """In place: shrink ``adv − x`` onto the L2 ball of radius ε, then clip to [0,1]."""
    delta = adv.sub_(x)
    factor = (eps / l2_norm(delta)).clamp_(max=1.0)  # ‖δ‖ = 0 gives inf -> 1
    return delta.mul_(per_image(factor, delta)).add_(x).clamp_(0, 1)


def uniform_linf(x: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """Random start: ``clip_[0,1](x + U(−ε, ε))``."""
    noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    return noise.add_(x).clamp_(0, 1)


def uniform_l2(x: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """Random start (torchattacks ``PGDL2``): a Gaussian direction scaled to a U(0, ε) radius, clipped to [0,1]."""
    d = torch.empty_like(x).normal_(generator=generator)
    r = torch.empty(x.shape[0], device=x.device, dtype=x.dtype).uniform_(0, 1, generator=generator)
    d.mul_(per_image(r * eps / l2_norm(d), d))
    return d.add_(x).clamp_(0, 1)


def ramp_sizes(total: float, steps: int) -> list[float]:
    """Step sizes ``total·(S − n)/(S(S+1)/2)``, n = 0…S−1, summing to ``total`` (the authors' ramp, §5.2).

    S = 7, total = 0.1 -> [0.025, 0.021429, …, 0.003571]; S = 450, total = 20 -> 0.088692 … 0.000197.
    """
    denom = steps * (steps + 1) / 2
    return [total * (steps - n) / denom for n in range(steps)]
