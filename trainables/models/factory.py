"""Backbone factory over timm (plus ``smallcnn`` for CPU runs) returning a ``Classifier``.

Grad-CAM target layers per family (pytorch-grad-cam conventions, mapped onto timm module names;
ALGORITHMS.md §1.1):

| family       | timm example        | target layer       | why                                         |
|--------------|---------------------|--------------------|---------------------------------------------|
| resnet       | resnet18            | ``layer4``         | last residual stage (grad-cam: layer4[-1])   |
| mobilenetv2  | mobilenetv2_100     | ``bn2``            | conv_head + BN + act = torchvision features[-1] |
| efficientnet | efficientnet_b0     | ``bn2``            | same as MobileNetV2                          |
| densenet     | densenet121         | ``features.norm5`` | final BN+ReLU = torchvision features[-1]     |
| vgg          | vgg11_bn, vgg19     | ``features``       | last conv block; VGG gets a GAP head (Pets study) |
| convnext     | convnext_tiny       | ``stages.3``       | last stage                                    |
| smallcnn     | smallcnn            | ``stages.3``       | last stage                                    |
"""
from __future__ import annotations

import re

import timm
import torch
from torch import nn

from trainables.models.classifier import Classifier
from trainables.models.smallcnn import SmallCNN

TARGET_LAYERS = {
    "resnet": "layer4",
    "mobilenetv2": "bn2",
    "efficientnet": "bn2",
    "densenet": "features.norm5",
    "vgg": "features",
    "convnext": "stages.3",
    "smallcnn": "stages.3",
}
_FAMILY_PATTERNS = [
    ("smallcnn", r"^smallcnn"),
    ("resnet", r"^(resnet|resnext|seresnet|wide_resnet)"),
    ("mobilenetv2", r"^mobilenetv2"),
    ("efficientnet", r"^(efficientnet|tf_efficientnet)"),
    ("densenet", r"^densenet"),
    ("vgg", r"^vgg"),
    ("convnext", r"^convnext"),
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def family_of(backbone: str) -> str:
    for family, pattern in _FAMILY_PATTERNS:
        if re.match(pattern, backbone):
            return family
    return "generic"


SMALL_CNNS = {"smallcnn": "batch", "smallcnn_gn": "group"}


def backbone_names() -> list[str]:
    return [*SMALL_CNNS, *timm.list_models()]


def backbone_exists(name: str) -> bool:
    return name in SMALL_CNNS or timm.is_model(name)


class _GapHead(nn.Module):
    """GAP + linear classifier replacing VGG's 25088-d flatten + FC layers (Pets study, Top-GAP Table 1)."""

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x, pre_logits: bool = False):
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(self.drop(x))


def _vgg_gap(net: nn.Module, num_classes: int, drop_rate: float) -> nn.Module:
    net.pre_logits = nn.Identity()
    net.head = _GapHead(net.feature_info[-1]["num_chs"], num_classes, drop_rate)
    return net


def create_backbone(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                    drop_rate: float = 0.0) -> nn.Module:
    if name in SMALL_CNNS:
        return SmallCNN(num_classes, in_chans=in_chans, drop_rate=drop_rate, norm=SMALL_CNNS[name])
    net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                            drop_rate=drop_rate)
    if family_of(name) == "vgg":
        net = _vgg_gap(net, num_classes, drop_rate)
    return net


def build_classifier(backbone: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                     drop_rate: float = 0.0, mean=None, std=None) -> Classifier:
    """One factory: a timm backbone (or ``smallcnn``) wrapped with normalisation and its CAM target layer."""
    net = create_backbone(backbone, num_classes, in_chans, pretrained, drop_rate)
    if mean is None:
        cfg = getattr(net, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", IMAGENET_MEAN) if in_chans == 3 else (0.5,) * in_chans
        std = cfg.get("std", IMAGENET_STD) if in_chans == 3 else (0.5,) * in_chans
    family = family_of(backbone)
    target = TARGET_LAYERS.get(family) or _last_conv_name(net)
    return Classifier(net, mean, std, family, target, num_classes)


def _last_conv_name(net: nn.Module) -> str:
    name = None
    for n, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            name = n
    if name is None:
        raise ValueError("backbone has no Conv2d layer to use as the Grad-CAM target")
    return name


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def feature_channels(model: Classifier, image_size: int) -> list[int]:
    """Channels of each timm ``feature_info`` entry (for heads that need a pyramid)."""
    return [f["num_chs"] for f in model.net.feature_info]
