"""The smooth copy of a network for attribution attacks (ART §4.5; Ghorbani et al.): second derivatives of a
piecewise-linear network vanish, so IFIA differentiates a copy whose piecewise-linear activations are
replaced by Softplus_β-based smooth versions:

    ReLU -> Softplus_β;  Hardtanh/ReLU6 [a, b] -> a + sp(u - a) - sp(u - b);  LeakyReLU(s) -> s·u + (1 - s)·sp(u)

(sp = Softplus_β; each tends to the original as β -> ∞). Other modules register their smooth version with
``@register_smooth(Cls)`` (ART's switchable ReLU does, in ``regimes/art.py``). ``smoothness_problem`` says
why a copy is not smooth: a piecewise-linear activation module left, or an input Hessian-vector product
that is exactly zero (e.g. ``F.relu`` called inside a ``forward``).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

SMOOTH: dict[type, Callable[[nn.Module, float], nn.Module]] = {}
PIECEWISE_LINEAR = (nn.ReLU, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Threshold)


def register_smooth(cls: type) -> Callable:
    def deco(make: Callable[[nn.Module, float], nn.Module]):
        SMOOTH[cls] = make
        return make

    return deco


class SmoothClamp(nn.Module):
    """``a + sp(u - a) - sp(u - b)``: a smooth clamp to [a, b] (Hardtanh, ReLU6)."""

    def __init__(self, low: float, high: float, beta: float):
        super().__init__()
        self.low, self.high, self.beta = low, high, beta

    def forward(self, u):
        return self.low + F.softplus(u - self.low, self.beta) - F.softplus(u - self.high, self.beta)


class SmoothLeaky(nn.Module):
    """``s·u + (1 - s)·sp(u)``: a smooth leaky ReLU of slope ``s``."""

    def __init__(self, slope: float, beta: float):
        super().__init__()
        self.slope, self.beta = slope, beta

    def forward(self, u):
        return self.slope * u + (1 - self.slope) * F.softplus(u, self.beta)


register_smooth(nn.ReLU)(lambda m, beta: nn.Softplus(beta))
register_smooth(nn.Hardtanh)(lambda m, beta: SmoothClamp(m.min_val, m.max_val, beta))
register_smooth(nn.ReLU6)(lambda m, beta: SmoothClamp(0.0, 6.0, beta))
register_smooth(nn.LeakyReLU)(lambda m, beta: SmoothLeaky(m.negative_slope, beta))


def smooth_copy(model: nn.Module, beta: float = 50.0) -> nn.Module:
    """A copy of ``model`` (eval mode) with every registered activation replaced by its smooth version."""
    smooth = copy.deepcopy(model)
    for module in list(smooth.modules()):
        for name, child in list(module._modules.items()):  # every name, also of a module used twice
            make = SMOOTH.get(type(child))
            if make is not None:
                setattr(module, name, make(child, beta))
    return smooth.eval()


def smoothness_problem(smooth: nn.Module, x: torch.Tensor) -> str | None:
    """None if ``smooth`` has no piecewise-linear activation left and a nonzero input Hessian-vector product
    of its summed logits on ``x [B,C,H,W]``; else the reason (one line)."""
    left = sorted({type(m).__name__ for m in smooth.modules() if isinstance(m, PIECEWISE_LINEAR)})
    if left:
        return f"the smooth attack copy keeps piecewise-linear activations ({', '.join(left)}) with no smooth version"
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(smooth(xg).sum(), xg, create_graph=True)
        if not g.requires_grad:
            return "the smooth attack copy is piecewise linear in its input (its input gradient is constant)"
        (hv,) = torch.autograd.grad((g * torch.ones_like(g)).sum(), xg, allow_unused=True)
    if hv is None or not bool(hv.abs().sum() > 0):
        return "the smooth attack copy is piecewise linear in its input (zero second derivative)"
    return None
