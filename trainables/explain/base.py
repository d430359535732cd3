"""The CAM skeleton, once (pytorch-grad-cam's ``base_cam.py`` pattern) and the CAM-method registry.

A CAM method is one registered subclass of ``BaseCAM`` that overrides one hook, ``raw``: images and
(optional) target classes -> a raw class-activation map at the model's feature resolution. The base
class resolves the targets (predicted class when none are given), upsamples bilinearly to the input size
and min-max normalises each map with pytorch-grad-cam's normaliser ``(m - min m) / (1e-7 + max(m - min m))``
(ALGORITHMS.md §1.1), like pytorch-grad-cam twice: at the feature resolution and after upsampling (the
second pass makes the result independent of the map's scale, even for maps far below the 1e-7 term).
Everything stays a batched tensor on the model's device.

    out = CAM_METHODS.get("gradcam")()(model, x)      # x: [B,C,H,W] in [0,1]
    out.cam      # [B,H,W] in [0,1]
    out.targets  # [B] class of each map (predicted unless given)
    out.logits   # [B,K] clean logits of the same forward pass
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainables.registry import Registry

NORM_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


@dataclass
class CAMOutput:
    cam: torch.Tensor      # [B,H,W] in [0,1]
    targets: torch.Tensor  # [B] int64
    logits: torch.Tensor   # [B,K]


def minmax(maps: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Per-map min-max scaling of ``maps: [B,...]`` to [0,1]: ``(m - min) / (eps + max(m - min))``."""
    flat = maps.flatten(1)
    shifted = flat - flat.min(1, keepdim=True).values
    return (shifted / (eps + shifted.max(1, keepdim=True).values)).view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``maps: [B,h,w]`` to ``size`` (half-pixel centres, as ``cv2.resize``)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def resolve_targets(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """The given targets, or the predicted class of each row of ``logits``."""
    if targets is None:
        return logits.argmax(1)
    return torch.as_tensor(targets, device=logits.device, dtype=torch.long).reshape(-1)


class BaseCAM:
    """``cam(model, x, targets=None) -> CAMOutput``; subclasses implement ``raw``."""

    name: ClassVar[str]

    def raw(self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(maps [B,h,w], logits [B,K], targets [B])`` for images ``x: [B,C,H,W]`` in [0,1]."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None = None) -> CAMOutput:
        maps, logits, targets = self.raw(model, x, targets)
        cam = minmax(upsample(minmax(maps.detach().float()), x.shape[-2:]))
        return CAMOutput(cam=cam, targets=targets, logits=logits.detach())


CAM_METHODS: Registry[type[BaseCAM]] = Registry("CAM method", "trainables.explain")
register_cam = CAM_METHODS.register


def cam_kind_for(regime, requested: str = "auto") -> str:
    """The CAM method the evaluation uses: ``native`` for regimes whose head is the CAM, else Grad-CAM."""
    if requested != "auto":
        return requested
    return "native" if getattr(regime, "cam_kind", "gradcam") == "native" else "gradcam"
