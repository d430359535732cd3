"""The Top-GAP model: a backbone's feature pyramid -> simplified FPN -> class activation maps -> Top-GAP(k).

Architecture (top-gap paper §3.1, Fig. 2; ALGORITHMS.md §2.1). For ``levels`` consecutive timm feature
maps F_1..F_f (largest first): one 3×3 conv C_i -> 256 (with bias, no BN/activation: Table 1's parameter
counts allow nothing else), nearest (or bilinear) upsampling to F_1's size, sum, optional dropout, and a
1×1 conv 256 -> K = the CAM X ∈ R^{B×K×h×w}; Top-GAP(X, k) (``topk_pool``) gives the logits. The
backbone is pruned after the deepest map it feeds (timm ``prune_intermediate_layers``: classifier,
EfficientNet's conv_head, VGG's FC layers, DenseNet's later blocks go).

Which maps (``levels`` maps starting at the first with stride >= ``cam_reduction``; R, from Table 1):
4 maps from stride 4 (EfficientNet-B0 with 53 classes: 4,752,817 params = Table 1's 4.75 M; ResNet: the
paper's 56×56 CAM at 224 px); VGG 3 maps from stride 4 (its stride-32 map is a parameter-free max-pool:
12,432,872 = Table 1's 12.43 M); DenseNet 3 maps from stride 4 (Table 1: "grows slightly"; with 4 maps
it would grow 7.98 M -> 13.70 M; Table 1's 8.03 M matches no map choice); smallcnn 3 maps from stride 2.

With ``fpn=False`` (Table 8 ablation) the CAM is a 1×1 conv on the standard network's final feature map
(``forward_features``), initialised from the original classifier: with GAP pooling that network *is* the
standard one.

Three modes (paper §3.1): training (``model.train()``: dropout + pooling), prediction (``model.eval()``),
CAM (``TopGapClassifier.scaled_cam``: pooling off, BN frozen, each class map min-max scaled to [0,1]).

Because the head is linear (no activation), when dropout is inactive and K < width the FPN is evaluated
in the equivalent composed form Σ_i up(conv3×3(F_i; W1·W3_i, W1·b3_i)) + b1: same function, same
parameters and gradients, ~256/K times fewer head FLOPs.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.classifier import Classifier
from trainables.models.topk_pool import PAPER_K_FRAC, TopKPool

PYRAMID: dict[str, tuple[int, int]] = {"vgg": (3, 4), "densenet": (3, 4), "smallcnn": (3, 2)}
DEFAULT_PYRAMID = (4, 4)  # (levels, cam_reduction)
Upsample = Literal["nearest", "bilinear"]


def pyramid_indices(feature_info: list[dict], levels: int, cam_reduction: int) -> list[int]:
    """``levels`` consecutive feature-map indices starting at the first map with stride >= cam_reduction."""
    reductions = [f["reduction"] for f in feature_info]
    start = next((i for i, r in enumerate(reductions) if r >= cam_reduction), len(reductions) - 1)
    return list(range(start, min(start + levels, len(reductions))))


def _strip_head(net: nn.Module) -> None:
    """Drop everything after ``forward_features`` (unused parameters would break DDP)."""
    for name in ("global_pool", "pre_logits", "fc", "head", "classifier"):
        if isinstance(getattr(net, name, None), nn.Module):
            setattr(net, name, nn.Identity())


class FeaturePyramid(nn.Module):
    """``net`` read as feature maps ``[F_1..F_f]`` (largest first); nothing after F_f is kept.

    ``final=True`` returns ``[forward_features(x)]`` instead (the standard network's last map)."""

    def __init__(self, net: nn.Module, indices: list[int], final: bool = False):
        super().__init__()
        info = net.feature_info
        self.net, self.indices, self.final = net, list(indices), final
        self.module_names = [info[i]["module"] for i in self.indices]
        self.channels = [net.num_features] if final else [info[i]["num_chs"] for i in self.indices]
        self.timm_api = hasattr(net, "forward_intermediates") and not final
        if self.timm_api:
            net.prune_intermediate_layers(self.indices, prune_norm=True, prune_head=True)
        else:
            _strip_head(net)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.final:
            return [self.net.forward_features(x)]
        if self.timm_api:
            return self.net.forward_intermediates(x, indices=self.indices, intermediates_only=True,
                                                 stop_early=True)
        feats: list[torch.Tensor] = []
        hooks = [self.net.get_submodule(m).register_forward_hook(lambda _m, _i, o: feats.append(o))
                 for m in self.module_names]
        try:
            self.net.forward_features(x)
        finally:
            for h in hooks:
                h.remove()
        return sorted(feats, key=lambda f: -f.shape[-1] * f.shape[-2])


class FPNHead(nn.Module):
    """Feature maps (largest first) -> CAM ``[B,K,h_1,w_1]`` (Fig. 2: 3×3 convs, upsample, add, 1×1)."""

    def __init__(self, in_chs: list[int], num_classes: int, width: int = 256, drop_rate: float = 0.0,
                 upsample: Upsample = "nearest"):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 3, padding=1) for c in in_chs)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.upsample = upsample
        self.composed = num_classes < width

    def _up(self, t: torch.Tensor, size) -> torch.Tensor:
        if t.shape[-2:] == size:
            return t
        return F.interpolate(t, size=size, mode=self.upsample,
                             **({} if self.upsample == "nearest" else {"align_corners": False}))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        if self.composed and not (self.training and self.drop.p > 0):
            w1 = self.classifier.weight.flatten(1)  # [K, width]
            out = sum(self._up(F.conv2d(f, torch.einsum("kc,cdhw->kdhw", w1, conv.weight), w1 @ conv.bias,
                                        padding=1), size) for conv, f in zip(self.lateral, feats))
            return out + self.classifier.bias.view(1, -1, 1, 1).to(out.dtype)
        fused = sum(self._up(conv(f), size) for conv, f in zip(self.lateral, feats))
        return self.classifier(self.drop(fused))


class ConvCAMHead(nn.Module):
    """No-FPN ablation: dropout + 1×1 conv on the single final map."""

    def __init__(self, in_ch: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Conv2d(in_ch, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.drop(feats[-1]))


class TopGapNet(nn.Module):
    """``body`` (pyramid) -> ``head`` (CAM) -> ``pool`` (logits); input already normalised."""

    def __init__(self, body: FeaturePyramid, head: nn.Module, pool: TopKPool):
        super().__init__()
        self.body, self.head, self.pool = body, head, pool

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.cam(x))


class TopGapClassifier(Classifier):
    """A ``Classifier`` (x in [0,1] -> logits) whose head outputs the CAM.

    ``model(x, with_cam=True)`` returns ``(logits, cam)`` from one forward (through DDP's ``forward``);
    ``cam(x)`` the raw class maps ``[B,K,h,w]``; ``scaled_cam(x)`` the paper's CAM mode."""

    def forward(self, x: torch.Tensor, with_cam: bool = False):
        cam = self.net.cam(self.normalize(x))
        logits = self.net.pool(cam)
        return (logits, cam) if with_cam else logits

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.cam(self.normalize(x))

    def scaled_cam(self, x: torch.Tensor) -> torch.Tensor:
        """CAM mode: pooling off, dropout off, BN frozen; each ``[h,w]`` class map min-max scaled to [0,1]."""
        was_training = self.training
        self.eval()
        try:
            cam = self.cam(x).float()
        finally:
            self.train(was_training)
        return minmax_maps(cam)


def minmax_maps(cam: torch.Tensor) -> torch.Tensor:
    """Scale each ``[h,w]`` map of ``cam: [B,K,h,w]`` to [0,1] (a constant map becomes 0)."""
    flat = cam.flatten(2)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)


def _classifier_of(net: nn.Module) -> nn.Module | None:
    return net.get_classifier() if hasattr(net, "get_classifier") else getattr(net, "fc", None)


@torch.no_grad()
def _copy_linear(src: nn.Module | None, dst: nn.Conv2d) -> None:
    """Start the 1×1 conv as the original linear classifier (same init as the standard model)."""
    if isinstance(src, nn.Linear) and src.weight.shape == dst.weight.shape[:2]:
        dst.weight.copy_(src.weight[:, :, None, None])
        dst.bias.copy_(src.bias)


def build_topgap(model: Classifier, *, fpn: bool = True, k: int | None = None, k_frac: float | None = None,
                 levels: int | None = None, cam_reduction: int | None = None, width: int = 256,
                 drop_rate: float = 0.0, upsample: Upsample = "nearest") -> TopGapClassifier:
    """Surgery on a freshly built ``Classifier``: its backbone + the Top-GAP head (``k_frac=1`` = GAP).

    ``target_layer`` (Grad-CAM) becomes the deepest backbone map the head reads."""
    net, num_classes = model.net, model.num_classes
    if fpn:
        d_levels, d_red = PYRAMID.get(model.family, DEFAULT_PYRAMID)
        idx = pyramid_indices(net.feature_info, levels or d_levels, cam_reduction or d_red)
        target = f"body.net.{net.feature_info[idx[-1]]['module']}"
        body = FeaturePyramid(net, idx)
        head = FPNHead(body.channels, num_classes, width, drop_rate, upsample)
    else:
        old, target = _classifier_of(net), f"body.net.{model.target_layer_name}"
        body = FeaturePyramid(net, [len(net.feature_info) - 1], final=True)
        head = ConvCAMHead(body.channels[0], num_classes, drop_rate)
        _copy_linear(old, head.classifier)
    if k is None and k_frac is None:
        k_frac = 1.0
    return TopGapClassifier(TopGapNet(body, head, TopKPool(k, k_frac)), model.mean, model.std,
                            model.family, target, num_classes)


TABLE1 = (("vgg11_bn", 1000), ("efficientnet_b0", 53), ("efficientnet_b0", 1000), ("densenet121", 1000))


def parameter_counts(rows=TABLE1) -> list[dict]:
    """Table 1's comparison: unmodified timm model vs the Top-GAP model (random init, no download).

    EfficientNet-B0's Table 1 row has 53 classes (COCO subset: 4.08 M unmodified), the others 1000."""
    import timm

    from trainables.models.factory import build_classifier, count_parameters

    out = []
    for backbone, num_classes in rows:
        unmodified = count_parameters(timm.create_model(backbone, num_classes=num_classes))
        ours = count_parameters(build_topgap(build_classifier(backbone, num_classes), k_frac=PAPER_K_FRAC))
        out.append({"backbone": backbone, "num_classes": num_classes, "unmodified": unmodified,
                    "topgap": ours, "ratio": ours / unmodified})
    return out
