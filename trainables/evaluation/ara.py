"""ARA family: ``robust/ara`` and ``robust/btr_ara`` (lipschitz paper §II-A, §III-A; ALGORITHMS.md §5.4).

Per image the minimal successful RMSE of Algorithm 1 for goal g_adv (``_ara``) or g_btr (``_btr``), on the
attack victim (``attacks.victim``). Images are taken in order until ``robust.ara_images`` correctly
classified ones (split over ranks); misclassified ones count as distance 0 (``ara_misclassified: zero``,
the paper) or are attacked too (``attack``, the code). An image the search never moves across the goal
keeps its last RMSE (a lower bound); the count is tagged ``<key>_unreached``. Also draws the g_explain+
adversarial-explanations figure (full evaluations, rank 0).
"""
from __future__ import annotations

from typing import Any

import torch

from trainables.evaluation.attacks import victim
from trainables.evaluation.base import Batch, Family, register_family

GOALS = {"robust/ara": ("adv", "_ara"), "robust/btr_ara": ("btr", "_btr")}


@register_family("ara")
class ARA(Family):
    group = "robustness"
    keys = tuple(GOALS)
    needs = ("logits",)

    def __init__(self, ctx, want):
        super().__init__(ctx, want)
        rc, rank, world = ctx.cfg.evaluation.robust, ctx.rank, ctx.world
        self.left = rc.ara_images // world + int(rank < rc.ara_images % world)

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        return cls.keys if cfg.evaluation.robust.ara_images else ()

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        from trainables.attacks import minimal_distance

        rc, x, y = self.ctx.cfg.evaluation.robust, batch["image"], batch["label"]
        ok = batch.need("logits").argmax(1) == y
        take = (ok.long().cumsum(0) - ok.long()) < self.left  # stop after the last needed correct image
        self.left -= int(ok[take].sum())
        run = (take & (ok | (rc.ara_misclassified == "attack"))).nonzero()[:, 0]
        out = {}
        for key in sorted(self.want):
            goal, name = GOALS[key]
            d = torch.where(take, 0.0, float("nan")).to(x.device)
            miss = torch.full_like(d, float("nan"))
            if len(run):
                res = minimal_distance(victim(self.ctx), x[run], y[run], goal, steps=rc.ara_steps,
                                       rule=rc.ara_rule, total=rc.ara_total, momentum=rc.ara_momentum)
                never = torch.isinf(res.rmse)
                d[run] = torch.where(never, res.last_rmse, res.rmse)
                miss[run] = never.float()
            out[name], out[f"{name}_unreached"] = d, miss
        return out

    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        from trainables.metrics.robustness import ara

        out = {}
        for key in sorted(self.want):
            d = values.get(GOALS[key][1], torch.empty(0))
            d = d[~torch.isnan(d)]
            if len(d):
                out[key] = ara(d, self._naive())
                miss = values[f"{GOALS[key][1]}_unreached"]
                self.ctx.tags[f"{key}_images"] = str(len(d))
                self.ctx.tags[f"{key}_unreached"] = str(int(miss[~torch.isnan(miss)].sum()))
        return out

    def _naive(self) -> float:
        naive = self.ctx.cfg.evaluation.robust.ara_naive
        return naive if naive is not None else 1.0 / self.ctx.num_classes

    def settings(self) -> dict[str, Any]:
        rc = self.ctx.cfg.evaluation.robust
        return {"images": rc.ara_images, "steps": rc.ara_steps, "rule": rc.ara_rule, "naive": self._naive(),
                "total": rc.ara_total if rc.ara_total is not None else 20 * rc.ara_steps / 450}

    def artifacts(self, batch: Batch) -> None:
        """g_explain+ for the true and the runner-up class (original, perturbation, result) -> a Figure."""
        from trainables.attacks.explanation import explanation_figure

        rc = self.ctx.cfg.evaluation.robust
        n = min(rc.explain_images, len(batch["label"]))
        if n:
            self.ctx.artifacts["adversarial_explanations"] = explanation_figure(
                self.ctx.model, batch["image"][:n], batch["label"][:n], rc.explain_rho, rc.explain_steps)
