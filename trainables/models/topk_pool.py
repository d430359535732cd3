"""Top-GAP(k) pooling: the mean of the k largest values of each class map (top-gap paper, eq. 2).

``TopGAP(X, k)_t = (1/k) Σ_{i=1..k} X̃_{i,t}`` where ``X̃_{:,t}`` is class map t flattened and sorted in
descending order (ALGORITHMS.md §2.2). ``k = 1`` is global max pooling, ``k = h·w`` is global average
pooling. The gradient is ``1/k`` at the k selected pixels and 0 elsewhere (``torch.topk``'s backward);
ties are broken by ``torch.topk``'s index order.

k is given either as a pixel count (``k``) or as a fraction of the CAM's pixels (``k_frac``, so the same
setting transfers across image sizes: the paper's k = 256 on a 56×56 CAM is ``k_frac = 256/56² ≈ 0.082``);
a fraction resolves to ``clamp(round(k_frac · h·w), 1, h·w)``.
"""
from __future__ import annotations

import torch
from torch import nn

PAPER_K_FRAC = 256 / 56**2  # k = 256 on the 56×56 CAM of a 224-px image (Table 8; = k 4 on a 7×7 map)


def resolve_k(num_pixels: int, k: int | None = None, k_frac: float | None = None) -> int:
    """The pixel count to average for a CAM of ``num_pixels`` pixels (exactly one of ``k``/``k_frac``)."""
    if (k is None) == (k_frac is None):
        raise ValueError("give exactly one of k (a pixel count) and k_frac (a fraction of the CAM's pixels)")
    if k is not None:
        if not 1 <= k <= num_pixels:
            raise ValueError(f"k={k} must lie in [1, {num_pixels}] (the CAM has {num_pixels} pixels); "
                             f"use k_frac to scale with the image size")
        return int(k)
    if not 0 < k_frac <= 1:
        raise ValueError(f"k_frac={k_frac} must lie in (0, 1]")
    return max(1, min(num_pixels, round(k_frac * num_pixels)))


def topgap_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x: [B,K,h,w]`` -> ``[B,K]``: the mean of the ``k`` largest values of each map."""
    flat = x.flatten(2)
    if k >= flat.shape[-1]:
        return flat.mean(-1)
    return flat.topk(k, dim=-1, sorted=False).values.mean(-1)


class TopKPool(nn.Module):
    """Top-GAP(k) as a layer; ``TopKPool(k_frac=1.0)`` is GAP, ``TopKPool(k=1)`` is global max pooling."""

    def __init__(self, k: int | None = None, k_frac: float | None = None):
        super().__init__()
        resolve_k(max(k or 1, 1), k, k_frac)  # validate the argument combination now
        self.k, self.k_frac = k, k_frac

    def resolved_k(self, h: int, w: int) -> int:
        return resolve_k(h * w, self.k, self.k_frac)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return topgap_pool(x, self.resolved_k(*x.shape[-2:]))

    def extra_repr(self) -> str:
        return f"k={self.k}" if self.k is not None else f"k_frac={self.k_frac:.4g}"
