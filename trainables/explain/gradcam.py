"""Grad-CAM (Selvaraju et al. 2017; ALGORITHMS.md §1.1), batched: one forward and one backward per batch.

For class c and target-layer activations ``A: [B,K,h,w]``: ``α_k = mean_ij ∂y^c/∂A^k_ij`` (y^c = logit),
``map = ReLU(Σ_k α_k A^k)``; the base class upsamples (bilinear) and min-max normalises. The target layer is
``Classifier.target_layer`` (the backbone family table in ``trainables.models.factory``). The backward
pass stops at the target layer (``torch.autograd.grad`` w.r.t. the activations only): no parameter
gradients are computed, which is where most of the speed-up over pytorch-grad-cam comes from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.explain.base import BaseCAM, register_cam, resolve_targets


class ActivationCAM(BaseCAM):
    """Skeleton of the gradient-weighted CAMs: subclasses override ``cam_weights`` only."""

    def cam_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Channel weights ``[B,K]`` from activations and gradients ``[B,K,h,w]``."""
        raise NotImplementedError

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """``ReLU(Σ_k w_k A^k)`` -> ``[B,h,w]`` (before upsampling and normalisation)."""
        w = self.cam_weights(acts, grads)
        return F.relu((w[:, :, None, None] * acts).sum(1))

    def raw(self, model, x, targets):
        store: dict[str, torch.Tensor] = {}

        def hook(_module, _inputs, output):
            store.setdefault("acts", output)

        handle = model.target_layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)  # so the activations require grad even if params do not
                logits = model(x)
                targets = resolve_targets(logits, targets)
                acts = store["acts"]
                score = logits.gather(1, targets[:, None]).sum()
                (grads,) = torch.autograd.grad(score, acts)
        finally:
            handle.remove()
        return self.combine(acts.detach(), grads), logits, targets


@register_cam("gradcam")
class GradCAM(ActivationCAM):
    name = "gradcam"

    def cam_weights(self, acts, grads):
        return grads.mean((2, 3))
