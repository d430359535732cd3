"""Half-Huber ReLU (eq. 11, lipschitz paper) and the model surgery that puts it in place of every ReLU.

    f(x) = 0                (x < 0)
           d·x²             (0 <= x < 1/(2d))
           x - 1/(4d)       (x >= 1/(2d))

f is C¹ (f' = 2dx on the bowl, 1 above the knee), so gradient penalties that differentiate through the
activation (double backprop, L_adv of eq. 9) see a continuous derivative; f'' = 2d on the open bowl and 0
elsewhere, including at both knots (ALGORITHMS.md §5.6). d = 1 is the paper's and the authors' setting.

Also here: ``avgpool_stem``, the ImageNet variant's "initial max pooling -> average pooling" (§III-I2).
"""
from __future__ import annotations

import warnings

import torch
import torch.fx
from torch import nn


class _HHReLUFn(torch.autograd.Function):
    """f(x) = d·u² + relu(x − u), u = clamp(x, 0, 1/(2d)); saves only the input (like ReLU its output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, d: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.d = d
        u = x.clamp(0, 1.0 / (2 * d))
        return torch.sub(x, u).relu_().addcmul_(u, u, value=d)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return _HHReLUGradFn.apply(grad_out, x, ctx.d), None


class _HHReLUGradFn(torch.autograd.Function):
    """g·f'(x) with f'(x) = 2d·clamp(x, 0, 1/(2d)), itself differentiable once (double backprop):
    ∂/∂g = f'(x), ∂/∂x = g·f''(x), f''(x) = 2d·1[0 < x < 1/(2d)] (0 at both knots, ALGORITHMS.md §5.6)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, x: torch.Tensor, d: float) -> torch.Tensor:
        ctx.save_for_backward(g, x)
        ctx.d = d
        return x.clamp(0, 1.0 / (2 * d)).mul_(2 * d).mul_(g)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gg: torch.Tensor):
        g, x = ctx.saved_tensors
        d, grad_g, grad_x = ctx.d, None, None
        if ctx.needs_input_grad[0]:
            grad_g = x.clamp(0, 1.0 / (2 * d)).mul_(2 * d).mul_(gg)
        if ctx.needs_input_grad[1]:
            grad_x = ((x > 0) & (x < 1.0 / (2 * d))).to(gg.dtype).mul_(2 * d).mul_(gg).mul_(g)
        return grad_g, grad_x, None


def hhrelu(x: torch.Tensor, d: float = 1.0) -> torch.Tensor:
    """Functional Half-Huber ReLU (eq. 11); any shape, any floating dtype."""
    return _HHReLUFn.apply(x, d)


# FX (e.g. the BN-folded evaluation copy, ``trainables.models.inference``) must record ``hhrelu`` as one call:
# tracing into the autograd.Function would inline its in-place forward as ordinary autograd ops.
torch.fx.wrap("hhrelu")


class HHReLU(nn.Module):
    """Half-Huber ReLU module; ``d`` > 0 sets the bowl's curvature (knee at 1/(2d))."""

    def __init__(self, d: float = 1.0):
        super().__init__()
        if not d > 0:
            raise ValueError(f"HHReLU d must be > 0, got {d}")
        self.d = float(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hhrelu(x, self.d)

    def extra_repr(self) -> str:
        return f"d={self.d:g}"


def swap_relu(model: nn.Module, d: float = 1.0) -> int:
    """Replace every ``nn.ReLU`` module in ``model`` (in place) by ``HHReLU(d)``; returns how many.

    Covers plain ReLUs and the ones inside timm's fused layers (``BatchNormAct2d.act``,
    ``ConvNormAct.bn.act``), which timm builds as ``nn.ReLU``. Not covered: ``F.relu`` called inside a
    ``forward`` and other activations (ReLU6, SiLU, GELU); a model with no ``nn.ReLU`` gets a warning.
    """
    targets = [(parent, name) for parent in model.modules()
               for name, child in parent.named_children() if isinstance(child, nn.ReLU)]
    for parent, name in targets:
        setattr(parent, name, HHReLU(d))
    if not targets:
        warnings.warn(f"swap_relu: {type(model).__name__} has no nn.ReLU modules; activations unchanged",
                      stacklevel=2)
    return len(targets)


def avgpool_stem(model: nn.Module, count_include_pad: bool = False) -> str | None:
    """Replace the first ``nn.MaxPool2d`` (the stem pool of ResNet/DenseNet) by an ``nn.AvgPool2d`` of
    the same kernel, stride and padding (§III-I2: eases gradient descent w.r.t. the input). Returns the
    replaced module's name, or None (with a warning) when the model has no max pooling.
    ``count_include_pad=False`` (R) keeps zero padding from darkening the border.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.MaxPool2d):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], nn.AvgPool2d(
                m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, count_include_pad=count_include_pad))
            return name
    warnings.warn(f"avgpool_stem: {type(model).__name__} has no nn.MaxPool2d; unchanged", stacklevel=2)
    return None
