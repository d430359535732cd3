"""The input gradient of a strided convolution as one stride-1 convolution + pixel shuffle (used by the CPU plan).

For ``y = conv2d(x, w, stride s, padding p)`` the input gradient is a transposed convolution; per output phase it
is a stride-1 correlation of the output gradient, and stacking the ``s²`` phases as output channels makes it one
convolution (equal to ATen's backward-data up to float summation order; tested in float64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _taps(k: int, s: int, p: int) -> tuple[int, int]:
    """The range of ``t`` with ``u = s·t + r + p`` a kernel tap ``0 ≤ u < k`` for some phase ``0 ≤ r < s``."""
    ts = [(u - r - p) // s for u in range(k) for r in range(s) if (u - r - p) % s == 0]
    return min(ts), max(ts)


def subpixel_kernel(w: torch.Tensor, stride, padding) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """The stride-1 kernel ``K: [C·sh·sw, O, KTh, KTw]`` that :func:`subpixel_input_grad` correlates the output
    gradient with, and the largest tap offsets ``(t_max_h, t_max_w)``.

    For ``y = conv2d(x, w, stride s, padding p)`` the input gradient at row ``m = s·a + r`` (phase ``r``) is
    ``Σ_{o,t} w[o, c, s·t + r + p] · g[o, a − t]`` (and the same along columns), a stride-1 correlation of ``g``
    per phase; stacking the ``s²`` phases as output channels makes it one convolution."""
    (sh, sw), (ph, pw) = stride, padding
    o, c, kh, kw = w.shape
    (h0, h1), (w0, w1) = _taps(kh, sh, ph), _taps(kw, sw, pw)
    k = w.new_zeros(c, sh, sw, o, h1 - h0 + 1, w1 - w0 + 1)
    for r in range(sh):
        for th in range(h0, h1 + 1):
            u = sh * th + r + ph
            if not 0 <= u < kh:
                continue
            for q in range(sw):
                for tw in range(w0, w1 + 1):
                    v = sw * tw + q + pw
                    if 0 <= v < kw:
                        k[:, r, q, :, h1 - th, w1 - tw] = w[:, :, u, v].t()
    k = k.reshape(c * sh * sw, o, h1 - h0 + 1, w1 - w0 + 1).contiguous(memory_format=torch.channels_last)
    return k, (h1, w1), (sh, sw)


def subpixel_input_grad(g: torch.Tensor, k: torch.Tensor, tmax: tuple[int, int], stride: tuple[int, int],
                        hw: tuple[int, int]) -> torch.Tensor:
    """∇_x of a strided convolution from its output gradient ``g: [B, O, Ho, Wo]`` -> ``[B, C, H, W]`` (equal to
    ATen's backward-data up to float summation order); ``k, tmax`` from :func:`subpixel_kernel`."""
    (sh, sw), (h, w), (ho, wo) = stride, hw, g.shape[-2:]
    a, b = -(-h // sh), -(-w // sw)  # rows / columns per phase
    kth, ktw = k.shape[-2:]
    left, right = (tmax[0], tmax[1]), (a + kth - 1 - ho - tmax[0], b + ktw - 1 - wo - tmax[1])
    g = g.contiguous(memory_format=torch.channels_last)
    if min(left + right) >= 0:  # symmetric conv padding, then drop the surplus rows / columns (no padded copy)
        ph, pw = max(left[0], right[0]), max(left[1], right[1])
        out = F.conv2d(g, k, padding=(ph, pw))[..., ph - left[0]:ph - left[0] + a, pw - left[1]:pw - left[1] + b]
    else:
        out = F.conv2d(F.pad(g, (left[1], right[1], left[0], right[0])), k)  # [B, C·sh·sw, a, b]
    n, c = out.shape[0], out.shape[1] // (sh * sw)
    if sh == sw:
        out = F.pixel_shuffle(out, sh)
    else:
        out = out.reshape(n, c, sh, sw, a, b).permute(0, 1, 4, 2, 5, 3).reshape(n, c, a * sh, b * sw)
    return out[..., :h, :w]
