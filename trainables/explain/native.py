"""Native class-activation maps: the model's own head read as a map (Zhou et al. 2016 CAM; Top-GAP §2.1).

- Models that expose ``cam(x) -> [B,K,h,w]`` (x in [0,1] pixels; the Top-GAP head, whose output *is* the
  CAM, ``regime.cam_kind == "native"``): the map of the target class.
- Heads that are a linear / 1×1 conv after global average pooling (smallcnn, ResNet, DenseNet, MobileNet,
  VGG with its GAP head): ``map_c = Σ_k W[c,k] F_k`` with F the last feature map (``forward_features``).
  The bias is a constant and vanishes in the min-max scaling. A head that is not GAP + linear (e.g.
  ConvNeXt's LayerNorm after pooling) raises ``ValueError``: use Grad-CAM there.

No ReLU (the Top-GAP paper min-max scales the raw class map); the base class upsamples and scales.
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.explain.base import BaseCAM, register_cam, resolve_targets


def _classifier_weight(net: nn.Module) -> torch.Tensor:
    head = net.get_classifier() if hasattr(net, "get_classifier") else getattr(net, "fc", None)
    if isinstance(head, nn.Linear):
        return head.weight
    if isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1):
        return head.weight.flatten(1)
    raise ValueError(f"native CAM needs a linear or 1x1-conv classifier after global pooling, "
                     f"got {type(head).__name__}; use cam='gradcam'")


def gap_linear_cam(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cams [B,K,h,w], logits [B,K])`` of a ``Classifier`` whose head is GAP + linear."""
    net = model.net
    feats = net.forward_features(model.normalize(x))
    logits = net.forward_head(feats)
    weight = _classifier_weight(net)
    pooled_logits = feats.mean((2, 3)) @ weight.t()
    # GAP + linear means the logits equal the pooled linear map up to the bias
    if not torch.allclose(logits - pooled_logits, (logits - pooled_logits)[:1].expand_as(logits),
                          rtol=1e-3, atol=1e-3 * (1 + logits.abs().max().item())):
        raise ValueError("native CAM: the head is not global average pooling + linear; use cam='gradcam'")
    return torch.einsum("kc,bchw->bkhw", weight, feats), logits


@register_cam("native")
class NativeCAM(BaseCAM):
    name = "native"

    @torch.no_grad()
    def raw(self, model, x, targets):
        if callable(getattr(model, "cam", None)):
            cams, logits = model.cam(x), model(x)
        else:
            cams, logits = gap_linear_cam(model, x)
        targets = resolve_targets(logits, targets)
        return cams[torch.arange(len(x), device=cams.device), targets], logits, targets
