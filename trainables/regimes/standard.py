"""Standard training: cross-entropy on clean images (fgsm-at-gradcam-iou-pets, regime (a))."""
from __future__ import annotations

from trainables.regimes.base import Regime, ce_with_logs, register_regime


@register_regime("standard")
class Standard(Regime):
    def loss(self, model, x, y):
        return ce_with_logs(model(x), y)
