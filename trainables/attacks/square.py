"""Square Attack (Andriushchenko et al. 2020): score-based, gradient-free — only logits are queried (no
autograd anywhere), so gradient masking cannot hide a non-robust model from it.

``square(model, x, y, eps, norm="linf"|"l2", queries=5000) -> x_adv``: random search on the margin loss
z_y − max_{i≠y} z_i. L-inf: start from vertical stripes of ±ε, then each query changes one random square
window (side shrinking with the fraction p of pixels, p_init = 0.8 on a schedule rescaled to ``queries``) to
±2ε per channel, keeping the change for the images whose margin fell (or went ≤ 0). L2: the same with
normalised "pseudo-gaussian" square patches that move mass between two windows at a fixed ‖δ‖₂ = ε.
Images stop being queried once misclassified.

A port of torchattacks' ``Square`` (itself fra31/auto-attack's ``square.py``), with the random draws taken
from ``generator`` in the same order: seeded like torchattacks' ``seed``, it returns the same images
(tests). As there, one window position per query is shared by the batch.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from trainables.attacks import norms
from trainables.attacks.gradient import BNMode, attack_mode

_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def p_selection(p_init: float, it: int, queries: int) -> float:
    """The fraction of pixels changed at query ``it`` (the reference's schedule, rescaled to 10,000 queries)."""
    it = int(it / queries * 10000)
    for bound, div in _SCHEDULE:
        if it <= bound:
            return p_init / div
    return p_init / 512


def margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[B]``: z_y − max_{i≠y} z_i (≤ 0: misclassified)."""
    z = model(x)
    zy = z.gather(1, y[:, None])[:, 0]
    return zy - z.scatter(1, y[:, None], float("-inf")).max(1).values


class _Rand:
    """The reference's draws (global-RNG ``torch.rand``) from one generator, on the CPU then moved."""

    def __init__(self, g: torch.Generator | None, device):
        self.g, self.device = g, device

    def sign(self, shape) -> torch.Tensor:
        return (2 * torch.rand(shape, generator=self.g) - 1).sign().to(self.device)

    def int(self, low: int, high: int) -> int:
        return int(low + (high - low) * torch.rand([1], generator=self.g))

    def coin(self) -> bool:
        return bool(torch.rand([1], generator=self.g) > 0.5)


def _rectangles(a: int, b: int) -> torch.Tensor:
    d = torch.zeros(a, b)
    c0, c1 = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        d[max(c0, 0):min(c0 + 2 * k + 1, a), max(0, c1):min(c1 + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
        c0, c1 = c0 - 1, c1 - 1
    return d / d.pow(2).sum().sqrt()


def eta(s: int, r: _Rand) -> torch.Tensor:
    """The L2 attack's ``s×s`` patch: +/− halves of nested rectangles, unit L2 norm, randomly transposed."""
    d = torch.cat([_rectangles(s // 2, s), -_rectangles(s - s // 2, s)])
    d = d / d.pow(2).sum().sqrt()
    return (d.T if r.coin() else d).to(r.device)


def _update(state, idx, x_new, m_new):
    """Keep ``x_new`` for the queried images whose margin fell or became ≤ 0."""
    best, m_best = state
    better = (m_new < m_best[idx]) | (m_new <= 0)
    m_best[idx] = torch.where(better, m_new, m_best[idx])
    best[idx] = torch.where(norms.per_image(better, x_new), x_new, best[idx])


def _linf_query(x, best, eps, s, r):
    c, h, w = x.shape[1:]
    vh, vw = r.int(0, h - s), r.int(0, w - s)
    new = best.clone()
    new[:, :, vh:vh + s, vw:vw + s] += 2.0 * eps * r.sign([c, 1, 1])
    return torch.min(torch.max(new, x - eps), x + eps).clamp(0, 1)


def _l2_norm(t):
    return norms.per_image(norms.l2_norm(t), t)


def _l2_query(x, best, eps, s, r):
    c, h, w = x.shape[1:]
    delta = best - x
    vh, vw = r.int(0, h - s), r.int(0, w - s)
    vh2, vw2 = r.int(0, h - s), r.int(0, w - s)
    mask = torch.zeros_like(x)
    mask[:, :, vh:vh + s, vw:vw + s] = 1.0
    mask[:, :, vh2:vh2 + s, vw2:vw2 + s] = 1.0
    win = delta[:, :, vh:vh + s, vw:vw + s]
    n_img, n_win = _l2_norm(delta), _l2_norm(delta * mask)
    new = eta(s, r).view(1, 1, s, s) * r.sign([len(x), c, 1, 1])
    new = new + win / (1e-12 + win.pow(2).sum((-2, -1), keepdim=True).sqrt())
    room = ((eps ** 2 - n_img ** 2).clamp(min=0) / c + n_win ** 2).sqrt()
    new = new / (1e-12 + new.pow(2).sum((-2, -1), keepdim=True).sqrt()) * room
    delta[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
    delta[:, :, vh:vh + s, vw:vw + s] = new
    return (x + delta / (_l2_norm(delta) + 1e-12) * eps).clamp(0, 1)


def _l2_start(x, eps, r):
    c, h, _ = x.shape[1:]
    s = h // 5
    delta, v0 = torch.zeros_like(x), (h - s * 5) // 2
    for i in range(h // s):
        for j in range(x.shape[3] // s):
            vh, vw = v0 + i * s, v0 + j * s
            delta[:, :, vh:vh + s, vw:vw + s] += eta(s, r).view(1, 1, s, s) * r.sign([len(x), c, 1, 1])
    return (x + delta / (_l2_norm(delta) + 1e-12) * eps).clamp(0, 1)


@torch.no_grad()
def _run(model, x, y, eps, norm, queries, p_init, r):
    c, h, w = x.shape[1:]
    if norm == "linf":
        best = (x + eps * r.sign([len(x), c, 1, w])).clamp(0, 1)
    else:
        best = _l2_start(x, eps, r)
    state = (best, margin(model, best, y))
    for it in range(queries):
        idx = (state[1] > 0).nonzero()[:, 0]
        if not len(idx):
            break
        side = math.sqrt(p_selection(p_init, it, queries) * c * h * w / c)
        if norm == "linf":
            x_new = _linf_query(x[idx], best[idx], eps, max(int(round(side)), 1), r)
        else:
            s = max(int(round(side)), 3)
            x_new = _l2_query(x[idx], best[idx], eps, s + (s % 2 == 0), r)
        _update(state, idx, x_new, margin(model, x_new, y[idx]))
    return best


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
           queries: int = 5000, restarts: int = 1, p_init: float = 0.8, bn: BNMode = "keep",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Square Attack: ``x: [B,C,H,W]`` in [0,1], ``y: [B]`` -> ``x_adv`` in the ε-ball (the clean image
    where no query misclassified it); each restart runs on the images still robust."""
    x, adv = x.detach(), x.detach().clone()
    r = _Rand(generator, x.device)
    with attack_mode(model, x, bn), torch.no_grad():
        robust = model(x).argmax(1) == y
        for _ in range(restarts):
            idx = robust.nonzero()[:, 0]
            if not len(idx):
                break
            found = _run(model, x[idx], y[idx], eps, norm, queries, p_init, r)
            broken = model(found).argmax(1) != y[idx]
            robust[idx[broken]] = False
            adv[idx[broken]] = found[broken]
    return adv
