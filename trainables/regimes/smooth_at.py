"""PGD adversarial training with a feature-map smoothing block (at-feature-map-smoothing, Algorithm 1, eq. 15
and 17; ALGORITHMS.md §3.1-3.2).

``build_model`` inserts a ``SmoothBlock`` (``trainables.models.smoothing``) after stage ``placement`` of
the backbone; ``loss`` is Madry's min-max: PGD images from ``trainables.attacks.gradient.pgd`` (the
attack runs through the block, whose filter is differentiable) and cross-entropy on them. The baselines of the
paper's N / A / G comparison are the ``standard`` and ``pgd_at`` regimes.

Choices the papers leave open or that differ between paper and code (defaults; ALGORITHMS.md §3.2, §6):
- ε, step and steps are in [0,1] pixel space (the model normalises inside). The paper's CIFAR ε = 0.1
  is implausible and the code trained A and G with different ε in *normalised* space; use one ε for A and
  G (R: 8/255, step 2/255, 7-10 steps for CIFAR-10; 0.1 / 0.01 / 40 for FMNIST; 1/255 / 20 for ImageNette).
  ``step_size: null`` = 2.5·ε/steps (Madry's rule, the ``pgd`` default, so A and G step alike).
- ``labels: true`` uses the ground truth (ImageNette code); ``predicted`` uses the model's current
  predictions, as cleverhans does with ``y=None`` (FMNIST / CIFAR code).
- ``attack_mode: train`` attacks with the model in train mode (BatchNorm batch statistics, as all the
  authors' code does); ``eval`` switches to eval mode for the attack only.
- ``adv_prob``: probability that a batch is adversarial (1 = always; the ImageNette code flips a coin
  per batch, 0.5), otherwise the batch trains on clean images.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from trainables.models import unwrap
from trainables.models.smoothing import Border, ConvInit, FilterName, Sigma, insert_smooth_block
from trainables.regimes.base import Regime, RegimeParams, register_regime


class SmoothATParams(RegimeParams):
    filter: FilterName = "gaussian"
    placement: Literal[1, 2, 3] = Field(1, description="insert the block after stage 1, 2 or 3 of the backbone")
    kernel_size: int = Field(3, ge=1, description="odd filter size (paper: 3)")
    sigma: Sigma = Field("feature", description="Gaussian σ: 'feature' (code: from the map size), 'ksize', or a number")
    border: Border = "code"
    conv_init: ConvInit = "kaiming"
    eps: float = Field(8 / 255, gt=0, le=1, description="PGD radius in [0,1] pixels (L-inf) or L2 norm")
    step_size: float | None = Field(None, gt=0, description="PGD step; null = 2.5 * eps / steps")
    steps: int = Field(7, ge=1)
    norm: Literal["linf", "l2"] = "linf"
    random_start: bool = True
    labels: Literal["true", "predicted"] = "true"
    attack_mode: Literal["train", "eval"] = "train"
    adv_prob: float = Field(1.0, ge=0, le=1, description="share of batches trained on PGD images")


def _image_size(trial_cfg) -> int:
    return trial_cfg.dataset.image_size if trial_cfg is not None else 64


@register_regime("smooth_at")
class SmoothAT(Regime):
    Params = SmoothATParams

    def build_model(self, model):
        p = self.params
        return insert_smooth_block(model, p.placement, _image_size(self.trial_cfg), filter=p.filter,
                                   kernel_size=p.kernel_size, sigma=p.sigma, border=p.border, conv_init=p.conv_init)

    def adversarial(self, model, x, y):
        """PGD images ``[B,C,H,W]`` in [0,1] (detached) for the batch, on the unwrapped model."""
        from trainables.attacks.gradient import pgd

        p, clf = self.params, unwrap(model)
        if p.labels == "predicted":
            with torch.no_grad():
                y = clf(x).argmax(1)
        return pgd(clf, x, y, p.eps, steps=p.steps, alpha=p.step_size, norm=p.norm, random_start=p.random_start,
                   bn=p.attack_mode).detach()

    def loss(self, model, x, y):
        adv = self.params.adv_prob >= 1 or float(torch.rand(())) < self.params.adv_prob
        inputs = self.adversarial(model, x, y) if adv else x
        logits = model(inputs)
        loss = F.cross_entropy(logits, y)
        return loss, {"train/acc": (logits.argmax(1) == y).float().mean().detach(), "train/adv_batch": float(adv)}
