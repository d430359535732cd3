"""Accuracy family: ``acc/top1``, ``acc/top5`` on the whole test split (clean logits, shared work)."""
from __future__ import annotations

import torch

from trainables.evaluation.base import Batch, Family, register_family


@register_family("accuracy")
class Accuracy(Family):
    group = "accuracy"
    keys = ("acc/top1", "acc/top5")
    split = "full"
    needs = ("logits",)

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits, y = batch.need("logits"), batch["label"]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        out = {"acc/top1": (top[:, 0] == y).float(), "acc/top5": (top == y[:, None]).any(1).float()}
        return {k: v for k, v in out.items() if k in self.want}
