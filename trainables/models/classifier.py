"""The model wrapper every attack, CAM method and regime sees.

``Classifier(x)`` takes images in [0,1] pixel space, ``x: [B,C,H,W]``, normalises them inside
(``(x - mean) / std``) and returns logits ``[B, num_classes]``. Attacks therefore work in pixel space and ε
means what the papers mean (torchattacks' convention). ``target_layer`` is the module whose activations
Grad-CAM uses (see ``trainables.models.factory.TARGET_LAYERS``).
"""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, net: nn.Module, mean, std, family: str, target_layer: str, num_classes: int):
        super().__init__()
        self.net = net
        self.family = family
        self.target_layer_name = target_layer
        self.num_classes = num_classes
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    @property
    def target_layer(self) -> nn.Module:
        return self.net.get_submodule(self.target_layer_name)

    @property
    def in_chans(self) -> int:
        return self.mean.shape[1]


def unwrap(model: nn.Module) -> nn.Module:
    """The ``Classifier`` inside a DDP / torch.compile wrapper."""
    while hasattr(model, "module") and not isinstance(model, Classifier):
        model = model.module
    return getattr(model, "_orig_mod", model)
