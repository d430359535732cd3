"""Shared per-batch work, computed once per batch whichever families ``need`` it (``base.Batch``).

- ``logits``: clean logits of the eval model (no grad), ``[B,K]``;
- ``cam``: the CAM of the predicted class by the evaluation's CAM method (``CAMOutput``), see
  ``cam_method``;
- ``adv:<attack>``: the images of one fixed-budget evaluation attack against the labels (``attacks.py``).
"""
from __future__ import annotations

import torch

from trainables.evaluation.base import Batch, EvalContext, register_work
from trainables.explain import cam_kind_for, compute_cam


@register_work("logits")
@torch.no_grad()
def logits(ctx: EvalContext, batch: Batch) -> torch.Tensor:
    return ctx.model(batch["image"])


def cam_method(ctx: EvalContext) -> str:
    """The CAM method actually used: ``explain.cam``, or for ``auto`` the regime's (native head) / Grad-CAM."""
    return cam_kind_for(ctx.regime, ctx.cfg.evaluation.explain.cam)


@register_work("cam")
def cam(ctx: EvalContext, batch: Batch):
    return compute_cam(ctx.model, batch["image"], cam_method(ctx))


@register_work("adv")
def adv(ctx: EvalContext, batch: Batch, attack: str) -> torch.Tensor:
    from trainables.evaluation.attacks import build_attack

    return build_attack(ctx, attack).call(batch["image"], batch["label"])
