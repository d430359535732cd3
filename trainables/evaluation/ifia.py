"""Attribution-robustness family (ART §4.5, ALGORITHMS.md §4.5): ``explain/attr_topk`` and ``attr_kendall``,
the top-k intersection and Kendall τ of clean vs IFIA-attacked IG maps; one attack serves both keys.

On the first ``explain.attr_images`` correctly classified subset images (split over DDP ranks; NaN for the
others and for images the attack could not keep correctly classified). The attack differentiates the smooth
copy of the model (``metrics/smooth.py``: ReLU, ReLU6/Hardtanh, LeakyReLU, ART's switchable ReLU, ...); when
that copy is not smooth (an activation without a smooth version, or a zero input Hessian) the keys are absent
and ``absent.<key>`` gives the reason, rather than comparing a first-order-only attack with the others.
"""
from __future__ import annotations

from typing import Any

import torch

from trainables.evaluation.base import Batch, Family, nan_like, register_family
from trainables.metrics import attribution as attr_m
from trainables.metrics.smooth import smooth_copy, smoothness_problem


@register_family("ifia")
class IFIA(Family):
    group = "explain"
    correct_only = True
    keys = ("explain/attr_topk", "explain/attr_kendall")
    needs = ("logits",)

    def __init__(self, ctx, want):
        super().__init__(ctx, want)
        self.attacked, self.problem = 0, None

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        return tuple(k for k in cls.keys if k.split("/")[1] in cfg.evaluation.explain.metrics)

    def _smooth(self, x: torch.Tensor):
        beta = self.ctx.cfg.evaluation.explain.ifia_beta

        def make():
            copy = smooth_copy(self.ctx.model, beta)
            self.problem = smoothness_problem(copy, x[:2])
            return copy

        return self.ctx.shared("ifia_smooth", make)

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        e, x, y = self.ctx.cfg.evaluation.explain, batch["image"], batch["label"]
        topk, tau = nan_like(x), nan_like(x)
        smooth = self._smooth(x)
        ok = (batch.need("logits").argmax(1) == y).nonzero()[:, 0]
        n = max(0, min(len(ok), -(-e.attr_images // self.ctx.world) - self.attacked))
        if n and self.problem is None:
            self.attacked += n
            idx = ok[:n]
            topk[idx], tau[idx] = attr_m.attribution_robustness(
                self.ctx.model, x[idx], y[idx], self._k(x), e.ifia_eps, e.ifia_step, e.ifia_steps, e.ifia_ig_steps,
                e.ig_steps, e.ifia_beta, smooth, self.ctx.generator("explain/ifia"))
        out = {"explain/attr_topk": topk, "explain/attr_kendall": tau}
        return {k: v for k, v in out.items() if k in self.want}

    def _k(self, x: torch.Tensor) -> int:
        return min(self.ctx.cfg.evaluation.explain.attr_topk, x[0, 0].numel())

    def absent_reason(self, key: str) -> str:
        return f"IFIA not run: {self.problem}" if self.problem else super().absent_reason(key)

    def settings(self) -> dict[str, Any]:
        e, size = self.ctx.cfg.evaluation.explain, self.ctx.cfg.dataset.image_size
        return {"k": min(e.attr_topk, size * size), "eps": e.ifia_eps, "step": e.ifia_step, "steps": e.ifia_steps,
                "beta": e.ifia_beta, "images": e.attr_images, "smooth_copy": self.problem or "smooth"}
