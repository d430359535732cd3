"""A fast, numerically equivalent copy of an eval-mode model for evaluation attacks.

``inference_copy(model)`` returns a deep copy with every Conv→BatchNorm pair folded into one convolution
(``torch.fx.experimental.optimization.fuse``: W' = W·γ/σ, b' = (b − μ)·γ/σ + β, exact in real arithmetic,
float rounding ~1e-7 relative) and its parameters frozen, laid out for the attack's forward + input-backward:

- **CUDA / other accelerators** (``layout="channels_last"``): the whole copy in channels_last (cuDNN's fast
  NHWC kernels; no NCHW↔NHWC reorders).
- **CPU** (``layout="cpu"``, the default there): a per-layer plan, chosen from the shapes only (so results are
  reproducible run to run), measured on resnet18, 64 px, batch 64, 2 cores:
  every plain ``nn.Conv2d`` becomes a :class:`PlannedConv2d` that runs
  (a) as one dense matrix product when every output pixel sees every input pixel (3×3 convs on 2×2 maps:
  the same multiply-adds as a direct conv, but one large GEMM: 2.9 vs 7.7 ms forward);
  (b) in NCHW when it is wide and its map small (≥ ``NCHW_MIN_CHANNELS`` outputs on ≤ ``NCHW_MAX_PIXELS``
  pixels), else in channels_last (oneDNN forward + backward-data of a 3×3 conv: 64→64 at 16×16 9.2 ms in
  channels_last vs 15.9 in NCHW, 3→16 at 32×32 1.8 vs 7.5, but 256→256 at 4×4 15.4 vs 10.4);
  (c) for a strided conv with few input channels (resnet's 7×7/2 stem on RGB), with its input gradient from
  :func:`subpixel_input_grad` — the transposed convolution as one stride-1 convolution with ``C_in·s²``
  outputs and a pixel shuffle — instead of oneDNN's backward-data kernel (14 vs 31 ms).
  Max pooling runs in channels_last (NCHW max pooling is a scalar loop: 21 ms vs 1.3 ms).
  ``arx bench attacks``: PGD-10 on the planned copy takes ~0.7× torchattacks' time on the model.

The copy computes the same function as ``model`` in eval mode (running BN statistics) — the network the
evaluation measures — so a white-box attack on the copy is a white-box attack on the model; robust
accuracy is still read from the original model's logits. Adversarial images are not bit-identical to an
attack on the unfused model (rounding differences are amplified through ReLU switching over PGD steps).
Parameters are frozen (``requires_grad=False``): the copy gives first-order input gradients only, which is
all an evaluation attack needs (a double backward through a dense or subpixel conv raises). Models that FX
cannot trace (data-dependent control flow) are copied unfused (logged at DEBUG level); the layout plan applies
to them too. Only for eval mode: train-mode BN depends on the batch and cannot be folded.
"""
from __future__ import annotations

import copy
import logging
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

Layout = Literal["auto", "cpu", "channels_last", "keep"]
NCHW_MIN_CHANNELS, NCHW_MAX_PIXELS = 256, 64  # CPU: convs this wide on maps this small run in NCHW
SUBPIXEL_MAX_IN_CHANNELS = 4  # CPU: strided convs with at most this many input channels use subpixel_input_grad
DENSE_MAX_ENTRIES = 1 << 23  # CPU: largest conv-as-matrix (entries; two fp32 copies = 64 MiB)


def inference_copy(model: nn.Module, layout: Layout = "auto") -> nn.Module:
    """``model`` (eval mode) -> a frozen, BN-folded (where traceable) copy in the attack layout.

    ``layout``: ``"auto"`` (``"cpu"`` for a model on the CPU, else ``"channels_last"``), ``"cpu"`` (the per-layer
    plan of the module docstring), ``"channels_last"`` (whole model), ``"keep"`` (as the model is)."""
    if any(m.training for m in model.modules()):
        raise ValueError("inference_copy needs an eval-mode model (train-mode batch norm cannot be folded)")
    try:
        from torch.fx.experimental.optimization import fuse

        out = fuse(model)  # copies; folds Conv/BN pairs whose conv output feeds only the BN
    except Exception as e:  # noqa: BLE001 - FX raises many types for untraceable code; fall back to a copy
        log.debug("inference_copy: FX could not trace %s (%s); copying unfused", type(model).__name__, e)
        out = copy.deepcopy(model)
    out.eval().requires_grad_(False)
    if layout == "auto":
        layout = auto_layout(out)
    if layout == "cpu":
        return cpu_plan(out)
    if layout == "channels_last":
        return out.to(memory_format=torch.channels_last)
    if layout != "keep":
        raise ValueError(f"inference_copy: unknown layout {layout!r} (auto, cpu, channels_last, keep)")
    return out


def auto_layout(model: nn.Module) -> Layout:
    """What ``layout="auto"`` means for ``model``: ``"cpu"`` where its parameters live on the CPU, else
    ``"channels_last"``."""
    p = next(model.parameters(), None)
    return "cpu" if p is None or p.device.type == "cpu" else "channels_last"


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
      backward (resnet18 layer4 at 64 px: 2.9 vs 7.7 ms forward) — the same multiply-adds, none wasted;
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
