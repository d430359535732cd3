"""ROAD — remove and debias (Rong et al. 2022; ALGORITHMS.md §3.4): MoRF removal with noisy linear
imputation, the accuracy curve and its AOPC. Pure, batched tensor functions on the images' device.

Images ``x: [B,C,H,W]`` in [0,1], labels ``y: [B]``, attributions ``[B,H,W]`` (channel-summed maps).
pytorch-grad-cam's ``metrics/road.py`` uses the same imputer (one CPU sparse solve per image); here it is
one batched conjugate-gradient solve on the device.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_NEIGHBOURS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def noisy_linear_impute(x: torch.Tensor, keep: torch.Tensor, noise: float = 0.01,
                        generator: torch.Generator | None = None, tol: float = 1e-6,
                        max_iter: int | None = None) -> torch.Tensor:
    """ROAD's noisy linear imputation (Rong et al. 2022), batched on the device.

    Every removed pixel (``keep [B,H,W]`` False) equals the weighted mean of its 8 neighbours (1/6 direct,
    1/12 diagonal, renormalised at the border), removed neighbours solved jointly — the sparse system of
    pytorch-grad-cam's ``NoisyLinearImputer``, solved here by conjugate gradients (it is symmetric
    positive definite) with a 3×3 stencil per image and channel — then ``N(0, noise²)`` is added to the
    imputed pixels. ``x: [B,C,H,W]`` -> same shape.
    """
    b, c, h, w = x.shape
    kernel = _NEIGHBOURS.to(x)[None, None]
    u = (~keep).to(x.dtype)[:, None].expand(b, c, h, w).reshape(b * c, 1, h, w)
    v = x.reshape(b * c, 1, h, w)

    def stencil(z):
        return F.conv2d(z, kernel, padding=1)

    d = stencil(torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype))

    def op(z):
        return u * (d * z - stencil(z))

    rhs = u * stencil(v * (1 - u))
    known_mean = (v * (1 - u)).sum((1, 2, 3), keepdim=True) / (1 - u).sum((1, 2, 3), keepdim=True).clamp_min(1)
    z = _conjugate_gradients(op, rhs, u * known_mean, tol, max_iter or 20 * max(h, w))
    filled = z + noise * torch.randn(z.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (v * (1 - u) + u * filled).view(b, c, h, w)


def _conjugate_gradients(op, rhs, z, tol, max_iter):
    """Batched CG for SPD ``op`` (one system per leading index); stops when every residual is small."""
    def dot(p, q):
        return (p * q).sum((1, 2, 3), keepdim=True)

    r = rhs - op(z)
    p, rs = r, dot(r, r)
    stop = (tol**2) * dot(rhs, rhs).clamp_min(1e-30)
    for it in range(max_iter):
        if it % 8 == 0 and bool((rs <= stop).all()):
            break
        ap = op(p)
        pap = dot(p, ap)
        alpha = torch.where(pap > 0, rs / pap.clamp_min(1e-30), torch.zeros_like(rs))
        z, r = z + alpha * p, r - alpha * ap
        rs_new = dot(r, r)
        p = r + torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs)) * p
        rs = rs_new
    return z


def most_relevant_keep_mask(attr: torch.Tensor, fraction: float) -> torch.Tensor:
    """``[B,H,W]`` bool, False at the ``round(fraction·H·W)`` highest-attribution pixels (MoRF)."""
    flat = attr.flatten(1)
    k = int(round(fraction * flat.shape[1]))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        keep.scatter_(1, flat.topk(k, dim=1).indices, False)
    return keep.view_as(attr)


@torch.no_grad()
def road_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attr: torch.Tensor,
               fractions: Sequence[float], noise: float = 0.01,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """MoRF accuracy curve ``[B,L]``: 1 where the prediction of ``x`` with its top ``fraction`` pixels
    (by ``attr [B,H,W]``) imputed still equals the label."""
    cols = []
    for f in fractions:
        xi = noisy_linear_impute(x, most_relevant_keep_mask(attr, f), noise, generator)
        cols.append((model(xi).argmax(1) == y).to(x.dtype))
    return torch.stack(cols, 1)


def aopc(curve: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Area over the perturbation curve: ``Σ_l (baseline - curve_l) / (L + 1)`` -> ``[B]``.

    ``baseline`` = unperturbed correctness (the paper's Eq. 35, x⁽⁰⁾ unperturbed) or ``curve[:, 0]`` (the
    authors' code: accuracy at the first fraction). Linear in the curve, so the mean over images equals
    the AOPC of the mean accuracy curve. Higher = more faithful.
    """
    return (baseline[:, None] - curve).sum(1) / (curve.shape[1] + 1)
