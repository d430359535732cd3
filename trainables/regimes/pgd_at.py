"""PGD adversarial training (Madry et al.; at-feature-map-smoothing §3.2, lipschitz §III-G; ALGORITHMS.md §3.2, §5.2).

min_θ E max_{‖δ‖ ≤ ε} CE(f(x + δ), y): per mini-batch, ``steps`` PGD steps (L-inf sign steps or L2
normalised steps) of size α from a random start in the ε-ball, projection and [0,1] clipping, with the
current model and true labels; the loss is CE on the adversarial batch only (``clean_weight`` > 0 mixes in
the clean batch in the same forward).

Units: ε in [0,1] pixels (L-inf) or L2 pixel units; normalisation is inside the model. Defaults: L-inf
ε = 4/255 (64-px images; CIFAR-10 practice is 8/255), L2 ε = 0.5 (Madry CIFAR-10 L2 model), 7 steps (Madry's
CIFAR training setting), α = 2.5·ε/steps. The attack runs on the local module (not the DDP wrapper), autocast
off, BN mode ``bn`` (keep = train mode, as the authors' codes do; "eval" = attack the running-stats network).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from trainables.attacks.generators import build_generator
from trainables.attacks.gradient import BNMode
from trainables.models import unwrap
from trainables.regimes.base import WarmupAttackRegime, WarmupParams, full_precision, register_regime

DEFAULT_EPS = {"linf": 4 / 255, "l2": 0.5}


@register_regime("pgd_at")
class PGDAT(WarmupAttackRegime):
    class Params(WarmupParams):
        norm: Literal["linf", "l2"] = Field("linf", description="threat model of the inner maximisation")
        eps: float | None = Field(None, gt=0, description="budget; default 4/255 (linf) or 0.5 (l2), pixel units")
        alpha: float | None = Field(None, gt=0, description="step size; default 2.5*eps/steps")
        steps: int = Field(7, ge=1, le=1000)
        random_start: bool = True
        clean_weight: float = Field(0.0, ge=0, le=1, description="weight of clean CE (0 = Madry)")
        bn: BNMode = Field("keep", description="batch-norm mode while crafting (keep = train mode)")

    def __init__(self, params=None, trial_cfg=None):
        super().__init__(params, trial_cfg)
        p = self.params
        self.eps = p.eps if p.eps is not None else DEFAULT_EPS[p.norm]
        self._build_attack(1.0)

    def _build_attack(self, scale: float) -> None:
        p = self.params
        self.eps_now = self.eps * scale
        self.attack = build_generator("pgd" if p.norm == "linf" else "pgd_l2", {
            "eps": self.eps_now, "alpha": p.alpha * scale if p.alpha else None, "steps": p.steps,
            "random_start": p.random_start, "bn": p.bn})

    def loss(self, model, x, y):
        x_adv = self.attack(unwrap(model), x, y)
        w, b = self.params.clean_weight, len(y)
        logits = full_precision(model(torch.cat([x_adv, x]) if w > 0 else x_adv))  # one forward: one DDP sync
        hit = (logits.argmax(1) == y.repeat(len(logits) // b)).float().detach()
        loss = F.cross_entropy(logits[:b], y)
        logs = {"train/adv_acc": hit[:b].mean(), "train/acc": hit[b:].mean() if w > 0 else hit.mean()}
        if w > 0:
            loss = (1 - w) * loss + w * F.cross_entropy(logits[b:], y)
        return loss, logs
