"""FGSM adversarial training on 50/50 clean + FGSM batches (fgsm-at-gradcam-iou-pets, regime (b); ALGORITHMS.md §1.1).

Per mini-batch (R, the paper's "combined dataset of clean and FGSM-perturbed inputs (50-50)" done online):
x_adv = clip_[0,1](x + ε·sign(∇_x CE(f(x), y))) with the current model and the true labels, then one forward
of [x; x_adv] and loss = (1 − w)·CE(clean) + w·CE(adv), w = ``adv_weight`` (0.5 = equal weight).

ε is in [0,1] pixels (normalisation is inside the model). The paper does not state ε (ALGORITHMS.md §1.2
suggests calibrating over {1,2,4,8}/255); the default 4/255 sits between the 64-px evaluation ε (1/255)
and CIFAR's 8/255, where single-step AT is prone to catastrophic overfitting. The attack runs on the local
module with the BN mode ``bn`` (default keep = train mode, as authors' codes do), autocast off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from trainables.attacks.generators import build_generator
from trainables.attacks.gradient import BNMode
from trainables.models import unwrap
from trainables.regimes.base import WarmupAttackRegime, WarmupParams, full_precision, register_regime


@register_regime("fgsm_at")
class FGSMAT(WarmupAttackRegime):
    class Params(WarmupParams):
        eps: float = Field(4 / 255, gt=0, le=1, description="FGSM L-inf budget in [0,1] pixels (paper: unstated)")
        adv_weight: float = Field(0.5, ge=0, le=1, description="weight of the FGSM half of the loss (50/50: 0.5)")
        bn: BNMode = Field("keep", description="batch-norm mode while crafting FGSM (keep = train mode)")

    def __init__(self, params=None, trial_cfg=None):
        super().__init__(params, trial_cfg)
        self._build_attack(1.0)

    def _build_attack(self, scale: float) -> None:
        self.eps_now = self.params.eps * scale
        self.attack = build_generator("fgsm", {"eps": self.eps_now, "bn": self.params.bn})

    def loss(self, model, x, y):
        x_adv = self.attack(unwrap(model), x, y)
        logits = model(torch.cat([x, x_adv]))
        ce = F.cross_entropy(full_precision(logits), torch.cat([y, y]), reduction="none")
        b, w = len(y), self.params.adv_weight
        loss = (1 - w) * ce[:b].mean() + w * ce[b:].mean()
        hit = (logits.argmax(1) == torch.cat([y, y])).float().detach()
        return loss, {"train/acc": hit[:b].mean(), "train/adv_acc": hit[b:].mean()}
