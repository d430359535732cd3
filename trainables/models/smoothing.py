"""Feature-map smoothing block and its insertion after a backbone stage (at-feature-map-smoothing, §3.4).

``SmoothBlock`` implements eq. 16-17 of the paper (ALGORITHMS.md §3.1):

    y = h + Conv1x1_{C->C}( Filter(h) ),   h: [B,C,H,W]

``Filter`` is a fixed (not learned) depthwise low-pass filter, as in kornia (the authors' code calls
``kornia.filters``):

- ``gaussian``: ``gaussian_blur2d`` with reflect padding. σ follows the authors' code by default
  (``sigma="feature"``): σ = 0.3·((S − 1)·0.5 − 1) + 0.8, OpenCV's "σ from kernel size" rule evaluated with
  the *feature-map* size S (height for σ_y, width for σ_x), which makes the 3×3 kernel nearly a box filter
  (σ 2.15 / 5.15 / 8.75 for 12 / 32 / 56 px maps). The code passes (σ from W, σ from H) in kornia's
  (σ_y, σ_x) slot; that only differs for non-square maps, and here σ_y comes from H. ``sigma="ksize"``
  evaluates the rule with the kernel size (σ = 0.8 for 3×3); a number fixes σ.
- ``mean``: ``box_blur`` with reflect padding.
- ``median``: ``median_blur`` with zero padding (the authors' kornia version had no other border rule; kornia
  0.9 defaults to reflect); differentiable through the selected value.

``border`` overrides the padding: ``code`` (default) = reflect for Gaussian / mean and zeros for median, as
in the authors' code; ``reflect`` or ``zeros`` for all three filters.

The Gaussian and box kernels are registered buffers (saved with the model, moved with ``.to()``, never in
``parameters()``), applied as a depthwise convolution. The 1×1 conv has a bias; ``conv_init`` picks its
initialisation: ``kaiming`` (the authors' CIFAR / ImageNette code: Kaiming-normal fan_out, bias left at
PyTorch's default), ``default`` (PyTorch's, the FMNIST code) or ``zeros`` (the block starts as the identity,
useful on pretrained backbones).

``insert_smooth_block(model, placement)`` puts a block after stage 1, 2 or 3 of the ``Classifier``'s
backbone. Stages are the backbone's ``feature_info`` entries without the stem (resnet ``layer1..3``,
efficientnet / mobilenet ``blocks.0..2``, convnext / smallcnn ``stages.0..2``, vgg the conv blocks of
``features``, densenet ``denseblock1..3``). The stage module ``m`` is replaced by
``Sequential(stage=m, smooth=SmoothBlock)``, so ``model`` stays a ``Classifier`` and its CAM target and
other module names keep working.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.filters import get_box_kernel2d, get_gaussian_kernel2d, median_blur
from torch import nn

FilterName = Literal["gaussian", "mean", "median"]
Sigma = float | Literal["feature", "ksize"]
ConvInit = Literal["kaiming", "default", "zeros"]
Border = Literal["code", "reflect", "zeros"]
_STEM = re.compile(r"(^|\.)(act1|bn1|conv1|stem|norm0)$")


def opencv_sigma(size: int) -> float:
    """σ = 0.3·((size − 1)·0.5 − 1) + 0.8 (OpenCV ``getGaussianKernel``'s rule; paper Appendix H)."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_sigma(sigma: Sigma, kernel_size: int, height: int, width: int) -> tuple[float, float]:
    """(σ_y, σ_x) for a map of ``height`` × ``width`` (see the module docstring)."""
    if sigma == "feature":
        return opencv_sigma(height), opencv_sigma(width)
    if sigma == "ksize":
        return (opencv_sigma(kernel_size),) * 2
    return float(sigma), float(sigma)


class SmoothBlock(nn.Module):
    """``y = x + conv1x1(filter(x))`` (eq. 17). ``x: [B,C,H,W]`` -> ``[B,C,H,W]``.

    ``size``: the (H, W) of the feature maps the block will see; the Gaussian kernel buffer is built for
    it (``sigma="feature"``). A map of another size gets a kernel computed for its own size on the fly.
    """

    def __init__(self, channels: int, filter: FilterName = "gaussian", kernel_size: int = 3,
                 sigma: Sigma = "feature", size: tuple[int, int] = (32, 32), conv_init: ConvInit = "kaiming",
                 border: Border = "code"):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.filter, self.kernel_size, self.sigma, self.size = filter, kernel_size, sigma, tuple(size)
        if border == "code":
            border = "zeros" if filter == "median" else "reflect"
        self.border_type = "constant" if border == "zeros" else "reflect"  # kornia's names
        if filter != "median":
            self.register_buffer("kernel", self._kernel(*self.size))
        self.conv = nn.Conv2d(channels, channels, 1, bias=True)
        if conv_init == "kaiming":
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        elif conv_init == "zeros":
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def _kernel(self, height: int, width: int) -> torch.Tensor:
        k = self.kernel_size
        if self.filter == "mean":
            return get_box_kernel2d(k)[0]
        return get_gaussian_kernel2d(k, torch.tensor([gaussian_sigma(self.sigma, k, height, width)]))[0]

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed filter alone (equals kornia's ``gaussian_blur2d`` / ``box_blur`` / ``median_blur``)."""
        k = self.kernel_size
        if self.filter == "median":
            return median_blur(x, k, border_type=self.border_type)
        kernel = self.kernel if tuple(x.shape[-2:]) == self.size else self._kernel(*x.shape[-2:]).to(x.device)
        c = x.shape[1]
        weight = kernel.to(x.dtype).expand(c, 1, k, k)
        return F.conv2d(F.pad(x, (k // 2,) * 4, mode=self.border_type), weight, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.smooth(x))

    def extra_repr(self) -> str:
        return (f"filter={self.filter}, kernel_size={self.kernel_size}, sigma={self.sigma!r}, size={self.size}, "
                f"border={self.border_type}")


def stage_names(net: nn.Module) -> list[str]:
    """The backbone's stages in order: ``feature_info`` modules without the stem."""
    info = getattr(net, "feature_info", None)
    if info is None:
        raise ValueError(f"{type(net).__name__} has no feature_info: cannot find its stages")
    names = [f["module"] for f in info] if isinstance(info, list) else list(info.module_name())
    return [n for n in names if not _STEM.search(n)]


@torch.no_grad()
def _output_shape(model: nn.Module, module: nn.Module, image_size: int) -> torch.Size:
    """Shape of ``module``'s output for one zero image (a dry run in eval mode)."""
    shapes = []
    handle = module.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        model(torch.zeros(1, model.in_chans, image_size, image_size, device=p.device, dtype=p.dtype))
    finally:
        handle.remove()
        model.train(was_training)
    return shapes[0]


def insert_smooth_block(model: nn.Module, placement: int = 1, image_size: int = 64, **block_kwargs) -> nn.Module:
    """Insert a ``SmoothBlock`` after stage ``placement`` (1-based) of ``model.net``; returns ``model``.

    ``model``: a ``Classifier``. ``image_size``: the input resolution, used to size the block (channels,
    and the map size that sets the Gaussian σ). ``block_kwargs``: ``SmoothBlock`` options.
    """
    stages = stage_names(model.net)
    if not 1 <= placement <= len(stages):
        raise ValueError(f"placement {placement}: this backbone has stages 1..{len(stages)} ({', '.join(stages)})")
    name = stages[placement - 1]
    stage = model.net.get_submodule(name)
    _, c, h, w = _output_shape(model, stage, image_size)
    block = SmoothBlock(c, size=(h, w), **block_kwargs)
    if block.border_type == "reflect" and min(h, w) <= block.kernel_size // 2:
        raise ValueError(f"placement {placement}: the map after {name} is {h}x{w}, too small for reflect padding; "
                         f"use a larger dataset.image_size, an earlier placement or border: zeros")
    p = next(model.parameters())
    wrapped = nn.Sequential(OrderedDict(stage=stage, smooth=block.to(device=p.device, dtype=p.dtype)))
    parent, _, child = name.rpartition(".")
    (model.net.get_submodule(parent) if parent else model.net).add_module(child, wrapped)
    return model
