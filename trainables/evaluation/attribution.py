"""Attribution-quality family (ALGORITHMS.md §3.3-3.4, §4.5): ``explain/gini_vg``, ``gini_ig`` (sparseness),
``ssim_vg`` (SSIM input stability), ``ros_vg`` (relative output stability), ``road_aopc`` (ROAD faithfulness),
on correctly classified images only (NaN for the others), each metric with its own random stream.

- ``ssim_vg``: for each σ the mean over the images whose noisy prediction still equals the label, then the
  mean over σ (the at-feature-map-smoothing paper's definition; the per-image value in the table is the
  image's mean over its admitted σ, ``_ssim_vg/<i>`` the per-σ values).
- ``ros_vg``: ``log10`` of the mean ROS over images no perturbation flips (``explain.ros_log10``).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from trainables.evaluation.base import Batch, Family, nan_like, nanmean, register_family
from trainables.explain.gradients import ig_map, vg_map
from trainables.metrics import attribution as attr_m
from trainables.metrics import road as road_m


@register_family("attribution")
class Attribution(Family):
    group = "explain"
    correct_only = True
    keys = ("explain/gini_vg", "explain/gini_ig", "explain/ssim_vg", "explain/ros_vg", "explain/road_aopc")
    needs = ("logits",)

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        return tuple(k for k in cls.keys if k.split("/")[1] in cfg.evaluation.explain.metrics)

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = batch["image"], batch["label"]
        ok = (batch.need("logits").argmax(1) == y).nonzero()[:, 0]
        values = self._on_correct(x[ok], y[ok]) if len(ok) else {}
        return {k: nan_like(x).index_put((ok,), v.float()) for k, v in values.items()}

    def _on_correct(self, x, y) -> dict[str, torch.Tensor]:
        ecfg, model, want, out = self.ctx.cfg.evaluation.explain, self.ctx.model, self.want, {}
        vg = vg_map(model, x, y) if want & {"explain/gini_vg", "explain/road_aopc"} else None
        ig = ig_map(model, x, y, ecfg.ig_steps, ecfg.ig_rule) if "explain/gini_ig" in want or (
            "explain/road_aopc" in want and ecfg.road_attribution == "ig") else None
        if "explain/gini_vg" in want:
            out["explain/gini_vg"] = attr_m.gini(vg)
        if "explain/gini_ig" in want:
            out["explain/gini_ig"] = attr_m.gini(ig)
        if "explain/ssim_vg" in want:
            per_sigma = attr_m.ssim_stability(model, x, y, vg_map, ecfg.noise_sigmas, ecfg.ssim_win_size,
                                              ecfg.ssim_data_range, ecfg.ssim_normalise,
                                              self.ctx.generator("explain/ssim_vg"))
            out["explain/ssim_vg"] = per_sigma.nanmean(1)
            out |= {f"_ssim_vg/{i}": per_sigma[:, i] for i in range(per_sigma.shape[1])}
        if "explain/ros_vg" in want:
            lo, hi = ecfg.ros_noise
            out["explain/ros_vg"] = attr_m.relative_output_stability(
                model, x, y, vg_map, ecfg.ros_samples, lo, hi, generator=self.ctx.generator("explain/ros_vg"))
        if "explain/road_aopc" in want:
            curve = road_m.road_curve(model, x, y, vg if ecfg.road_attribution == "vg" else ig,
                                      ecfg.road_fractions, ecfg.road_noise, self.ctx.generator("explain/road_aopc"))
            base = torch.ones_like(curve[:, 0]) if ecfg.road_baseline == "unperturbed" else curve[:, 0]
            out["explain/road_aopc"] = road_m.aopc(curve, base)
        return out

    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        out = nanmean(values, self.want - {"explain/ssim_vg"})
        sigmas = [v for k, v in sorted(values.items()) if k.startswith("_ssim_vg/")]
        per_sigma = [m for v in sigmas if not math.isnan(m := float(v.nanmean()))] if sigmas else []
        if per_sigma:
            out["explain/ssim_vg"] = sum(per_sigma) / len(per_sigma)
        ros = out.get("explain/ros_vg")
        if ros is not None and self.ctx.cfg.evaluation.explain.ros_log10:
            out["explain/ros_vg"] = math.log10(ros) if ros > 0 else float("-inf")
        return out

    def settings(self) -> dict[str, Any]:
        e = self.ctx.cfg.evaluation.explain
        return {"ig_steps": e.ig_steps, "noise_sigmas": list(e.noise_sigmas), "ros_samples": e.ros_samples,
                "ros_log10": e.ros_log10, "road_attribution": e.road_attribution,
                "ssim_data_range": e.ssim_data_range if e.ssim_data_range is not None else (
                    1.0 if e.ssim_normalise else 2.0)}
