"""An opt-in CPU layout for the evaluation's frozen attack victim (``evaluation.robust.victim: cpu_plan``).

``cpu_plan(model)`` swaps, in place, every plain ``nn.Conv2d`` of a frozen eval-mode copy for a
:class:`PlannedConv2d` and every ``nn.MaxPool2d`` for a :class:`ChannelsLastMaxPool2d`, and in a traced model
rewrites ReLU → max-pool pairs as max-pool → ReLU. The plan of each conv is chosen from the shapes only (so runs
are reproducible; timing-based autotuning would not be):

(a) ``dense``: when every output pixel sees every input pixel (3×3 convs on 2×2 maps) the conv is one dense
    matrix product — the same multiply-adds as a direct conv, as one large GEMM;
(b) ``direct``: NCHW when it is wide and its map small (≥ ``NCHW_MIN_CHANNELS`` outputs on ≤ ``NCHW_MAX_PIXELS``
    pixels), else channels_last;
(c) ``subpixel``: a strided conv with few input channels (resnet's 7×7/2 stem on RGB) gets its input gradient
    from :func:`subpixel_input_grad` — the transposed convolution as one stride-1 convolution with ``C_in·s²``
    outputs and a pixel shuffle — instead of oneDNN's backward-data kernel.

Every plan computes the same function and input gradient as the model (tests compare them in float64); what each
saves is measured by ``arx bench attacks`` (row ``attacks/pgd10_cpu_plan``), not asserted here. The thresholds
come from one CPU's oneDNN; another CPU may prefer others. Weights must be frozen: the dense and subpixel plans
give first-order input gradients only (a double backward raises).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from trainables.models.subpixel import subpixel_input_grad, subpixel_kernel

NCHW_MIN_CHANNELS, NCHW_MAX_PIXELS = 256, 64  # convs this wide on maps this small run in NCHW
SUBPIXEL_MAX_IN_CHANNELS = 4  # strided convs with at most this many input channels use subpixel_input_grad
DENSE_MAX_ENTRIES = 1 << 23  # largest conv-as-matrix (entries; two fp32 copies = 64 MiB)


def _recast(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """``module`` as an instance of its subclass ``cls``, sharing its parameters, buffers and settings."""
    new = cls.__new__(cls)
    new.__dict__ = dict(module.__dict__)
    return new


def cpu_plan(model: nn.Module) -> nn.Module:
    """Swap (in place) every plain ``nn.Conv2d`` for a :class:`PlannedConv2d` and every ``nn.MaxPool2d`` for a
    :class:`ChannelsLastMaxPool2d`; subclasses with their own ``forward`` (timm's ``Conv2dSame``) are kept. In a
    traced model, ReLU → max-pool pairs become max-pool → ReLU (:func:`pool_before_relu`)."""
    if isinstance(model, torch.fx.GraphModule):
        pool_before_relu(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and child.padding_mode == "zeros":
                setattr(parent, name, PlannedConv2d.from_conv(child))
            elif type(child) is nn.MaxPool2d:
                setattr(parent, name, ChannelsLastMaxPool2d.from_pool(child))
    return model


def pool_before_relu(gm: "torch.fx.GraphModule") -> int:
    """Rewrite ``maxpool(relu(x))`` as ``relu(maxpool(x))`` where the ReLU output feeds only the pool; returns the
    number of pairs rewritten. The same values (max commutes with the monotone ReLU) and the same input gradient
    (windows with a positive max route it to the same element; windows with max ≤ 0 pass none either way), on a
    quarter of the elements for a 3×3/2 pool (resnet's stem: 64×64×32×32 -> 64×64×16×16)."""
    mods, n = dict(gm.named_modules()), 0
    for pool in list(gm.graph.nodes):
        if pool.op != "call_module" or not isinstance(mods.get(pool.target), nn.MaxPool2d) or not pool.args:
            continue
        relu = pool.args[0]
        is_relu = (isinstance(relu, torch.fx.Node) and relu.op == "call_module"
                   and type(mods.get(relu.target)) is nn.ReLU)
        if not is_relu or len(relu.users) != 1 or mods[pool.target].return_indices:
            continue
        x = relu.args[0]
        pool_users = list(pool.users)
        pool.replace_input_with(relu, x)
        relu.args = (pool,)
        pool.append(relu)  # the ReLU now runs right after the pool
        for u in pool_users:
            u.replace_input_with(pool, relu)
        n += 1
    if n:
        gm.graph.lint()
        gm.recompile()
    return n


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` computed in channels_last (same values and argmax; oneDNN / ATen's NHWC kernel)."""

    @classmethod
    def from_pool(cls, pool: nn.MaxPool2d) -> "ChannelsLastMaxPool2d":
        return _recast(pool, cls)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)


class PlannedConv2d(nn.Conv2d):
    """A frozen ``nn.Conv2d`` that plans its kernel per input size (see the module docstring):

    - ``dense``: when every output pixel sees every input pixel (a 3×3 conv on a 2×2 map) and the map is small
      (≤ ``DENSE_MAX_ENTRIES``), the conv *is* a dense matrix ``[C·H·W, O·Ho·Wo]``: one GEMM forward, one
      backward — the same multiply-adds, none wasted;
    - ``subpixel``: a strided conv with ≤ ``SUBPIXEL_MAX_IN_CHANNELS`` input channels: channels_last forward,
      input gradient from :func:`subpixel_input_grad`;
    - ``direct``: ``F.conv2d`` in NCHW (≥ ``NCHW_MIN_CHANNELS`` outputs on ≤ ``NCHW_MAX_PIXELS`` pixels) or
      channels_last.

    Weights must not need gradients (an ``inference_copy`` is frozen); a conv whose weight needs them runs as a
    plain ``nn.Conv2d``."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "PlannedConv2d":
        new = _recast(conv, cls)
        new._plans: dict[tuple, _Plan] = {}
        return new

    def _pad(self) -> tuple[int, int] | None:
        """The padding as numbers (``"valid"`` = 0), None for ``"same"`` (PyTorch may pad it asymmetrically)."""
        if isinstance(self.padding, str):
            return (0, 0) if self.padding == "valid" else None
        return self.padding

    def _plan(self, x: torch.Tensor) -> "_Plan":
        key = (tuple(x.shape[1:]), x.device, x.dtype)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._make_plan(x)
        return plan

    def _make_plan(self, x: torch.Tensor) -> "_Plan":
        c, h, w = x.shape[1:]
        pad = self._pad()
        ho, wo = (h, w) if pad is None else (
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip((h, w), pad, self.dilation, self.kernel_size, self.stride))
        weight = self.weight.detach().to(x.dtype)
        bias = None if self.bias is None else self.bias.detach().to(x.dtype)
        if pad is not None and self.groups == 1 and c * h * w * self.out_channels * ho * wo <= DENSE_MAX_ENTRIES:
            mt = self._dense_matrix(weight, pad, (h, w), (ho, wo))
            if mt is not None:
                dense_bias = None if bias is None else bias.repeat_interleave(ho * wo)  # one per output element
                return _Plan("dense", torch.contiguous_format, mt, dense_bias, out_shape=(self.out_channels, ho, wo),
                             grad_matrix=mt.t().contiguous())
        wide_small = self.out_channels >= NCHW_MIN_CHANNELS and ho * wo <= NCHW_MAX_PIXELS
        fmt = torch.contiguous_format if wide_small else torch.channels_last
        plan = _Plan("direct", fmt, weight.contiguous(memory_format=fmt), bias)
        if (pad is not None and self.groups == 1 and self.dilation == (1, 1) and c <= SUBPIXEL_MAX_IN_CHANNELS
                and max(self.stride) > 1):
            plan = plan._replace(kind="subpixel", subpixel=(*subpixel_kernel(weight, self.stride, pad), (h, w)))
        return plan

    def _dense_matrix(self, w: torch.Tensor, pad, hw, out_hw) -> torch.Tensor | None:
        """``Mt: [C·H·W, O·Ho·Wo]`` with ``y.flatten(1) = x.flatten(1) @ Mt`` (bias aside), or None when some output
        pixel does not see some input pixel (the matrix would hold structural zeros: direct conv is cheaper)."""
        taps = []  # per dimension: taps[i][a] = the kernel index joining output i and input a
        for n_in, n_out, s, p, d, k in zip(hw, out_hw, self.stride, pad, self.dilation, self.kernel_size):
            table = [[divmod(a - i * s + p, d) for a in range(n_in)] for i in range(n_out)]
            if any(rem or not 0 <= u < k for row in table for u, rem in row):
                return None
            taps.append([[u for u, _ in row] for row in table])
        (h, wd), (ho, wo), (o, c) = hw, out_hw, w.shape[:2]
        mt = w.new_empty(c, h, wd, o, ho, wo)
        for i in range(ho):
            for j in range(wo):
                for a in range(h):
                    for b in range(wd):
                        mt[:, a, b, :, i, j] = w[:, :, taps[0][i][a], taps[1][j][b]].t()
        return mt.reshape(c * h * wd, o * ho * wo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or self.weight.requires_grad:
            return super().forward(x)
        plan = self._plan(x)
        if plan.kind == "dense":
            # viewed outside the Function: an in-place ReLU may follow
            return _DenseConv.apply(x, plan).view(x.shape[0], *plan.out_shape)
        if plan.kind == "subpixel" and x.requires_grad:
            return _SubpixelConv.apply(x, self, plan)
        return F.conv2d(x.contiguous(memory_format=plan.fmt), plan.weight, plan.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class _Plan(NamedTuple):
    """How a :class:`PlannedConv2d` runs on one input size: ``kind`` dense / subpixel / direct, the memory format
    and weight (for dense: the matrix ``Mt``) of its forward, the bias (dense: one per output element), and
    ``grad_matrix`` (dense: ``Mt^T``) or ``subpixel`` (:func:`subpixel_kernel`'s result and the input size)."""

    kind: str
    fmt: torch.memory_format
    weight: torch.Tensor
    bias: torch.Tensor | None
    out_shape: tuple[int, int, int] | None = None
    grad_matrix: torch.Tensor | None = None
    subpixel: tuple | None = None


class _DenseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan: _Plan):
        ctx.m, ctx.shape = plan.grad_matrix, x.shape
        flat = x.reshape(x.shape[0], -1)
        return flat @ plan.weight if plan.bias is None else torch.addmm(plan.bias, flat, plan.weight)

    @staticmethod
    @once_differentiable  # input gradients only: a double backward (e.g. through an explanation) raises
    def backward(ctx, g):
        return (g @ ctx.m).view(ctx.shape), None


class _SubpixelConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, conv: PlannedConv2d, plan: _Plan):
        ctx.subpixel = plan.subpixel
        return F.conv2d(x.contiguous(memory_format=plan.fmt), plan.weight, plan.bias, conv.stride, conv.padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        return subpixel_input_grad(g, *ctx.subpixel), None, None
