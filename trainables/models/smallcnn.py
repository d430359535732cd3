"""A small, fast CNN for CPU runs: 4 conv-BN-ReLU stages, global average pooling, a linear head.

``smallcnn_gn`` is the same network with GroupNorm (per-sample statistics): a DDP step over 2 ranks then
equals one step on the union batch exactly, which the DDP tests use.

Its structure mirrors timm's conventions (``stages``, ``global_pool``, ``fc``) so that Grad-CAM targets
(the last stage), native CAM (GAP + linear head) and stage-wise insertions work as on real backbones.
"""
from __future__ import annotations

from torch import nn


def _norm(kind: str, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if kind == "batch" else nn.GroupNorm(4, c)


def _stage(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        _norm(norm, cout),
        nn.ReLU(inplace=False),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        _norm(norm, cout),
        nn.ReLU(inplace=False),
    )


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 16, drop_rate: float = 0.0,
                 norm: str = "batch"):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        self.stem = nn.Identity()
        self.stages = nn.Sequential(
            _stage(in_chans, chans[0], 1, norm),
            _stage(chans[0], chans[1], 2, norm),
            _stage(chans[1], chans[2], 2, norm),
            _stage(chans[2], chans[3], 2, norm),
        )
        self.num_features = chans[-1]
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": f"stages.{i}"} for i, (c, r) in enumerate(zip(chans, [1, 2, 4, 8]))
        ]
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(chans[-1], num_classes)

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward_head(self, x):
        return self.fc(self.drop(self.global_pool(x).flatten(1)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))
