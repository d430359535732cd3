"""Localisation family: CAM of the predicted class -> ``explain/box_iou``, ``box_iou_random``, ``mask_iou``,
``pointing``, ``cam_l1`` (ALGORITHMS.md §1; DESIGN.md), each on the images its definition admits:

- ``box_iou`` (images with a GT box, all of them unless ``explain.box_correct_only``): CAM -> threshold ->
  contour box; a CAM without any box counts 0. ``box_iou_random``: the chance level on the same images
  (uniform random boxes, its own random stream). ``pointing`` (GT box): the CAM maximum inside the box; a
  constant (e.g. all-zero) CAM points nowhere and is a miss, consistent with its box IoU of 0.
  ``mask_iou`` (GT mask), ``cam_l1`` (every image).
- The CAM method is ``explain.cam`` (``auto``: native for regimes whose head is the CAM, else Grad-CAM),
  logged as the effective ``cam`` setting and the ``cam_kind`` tag. Also draws the CAM gallery figure.
"""
from __future__ import annotations

from typing import Any

import torch

from trainables.evaluation.base import Batch, Family, nan_like, register_family
from trainables.evaluation.work import cam_method
from trainables.explain import binarize, cam_boxes
from trainables.metrics import localization as loc_m

GROUND_TRUTH = {"explain/box_iou": "boxes", "explain/box_iou_random": "boxes", "explain/pointing": "boxes",
                "explain/mask_iou": "masks"}


@register_family("localization")
class Localization(Family):
    group = "explain"
    keys = ("explain/box_iou", "explain/box_iou_random", "explain/mask_iou", "explain/pointing", "explain/cam_l1")
    needs = ("cam",)

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        names = set(cfg.evaluation.explain.metrics) | ({"box_iou_random"} if "box_iou" in cfg.evaluation.explain.metrics
                                                       else set())
        return tuple(k for k in cls.keys if k.split("/")[1] in names)

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        ecfg, out = self.ctx.cfg.evaluation.explain, {}
        self.ctx.tags["cam_kind"] = cam_method(self.ctx)
        res = batch.need("cam")
        cam, box, nan = res.cam, batch["box"], nan_like(res.cam)
        admitted = ~torch.isnan(box).any(1) & ((res.targets == batch["label"]) if ecfg.box_correct_only else True)
        if "explain/box_iou" in self.want:
            iou = loc_m.box_iou(cam_boxes(cam, ecfg.cam_threshold, ecfg.box_rule), box).nan_to_num(0.0)
            out["explain/box_iou"] = torch.where(admitted, iou, nan)
        if "explain/box_iou_random" in self.want:
            rand = loc_m.random_box_iou(box.nan_to_num(0.0), cam.shape[-2], cam.shape[-1],
                                        generator=self.ctx.generator("explain/box_iou_random"))
            out["explain/box_iou_random"] = torch.where(admitted, rand, nan)
        if "explain/mask_iou" in self.want:
            iou = loc_m.mask_iou(binarize(cam, ecfg.cam_threshold), batch["mask"])
            out["explain/mask_iou"] = torch.where(batch["has_mask"].bool(), iou, nan)
        if "explain/pointing" in self.want:
            out["explain/pointing"] = loc_m.pointing_game(cam, box, ecfg.pointing_tolerance)
        if "explain/cam_l1" in self.want:
            out["explain/cam_l1"] = loc_m.cam_l1(cam)
        return out

    def absent_reason(self, key: str) -> str:
        what = GROUND_TRUTH.get(key)
        return f"no ground-truth {what} in the evaluated images" if what else super().absent_reason(key)

    def settings(self) -> dict[str, Any]:
        ecfg = self.ctx.cfg.evaluation.explain
        return {"cam": cam_method(self.ctx), "cam_threshold": ecfg.cam_threshold, "box_rule": ecfg.box_rule,
                "box_correct_only": ecfg.box_correct_only, "pointing_tolerance": ecfg.pointing_tolerance}

    def artifacts(self, batch: Batch) -> None:
        from trainables.evaluation._gallery import cam_gallery

        ecfg = self.ctx.cfg.evaluation.explain
        n = min(ecfg.gallery_images, len(batch["image"]))
        if n:
            res = batch.need("cam")
            boxes = cam_boxes(res.cam[:n], ecfg.cam_threshold, ecfg.box_rule)
            self.ctx.artifacts["cam_gallery"] = cam_gallery(batch["image"][:n], res.cam[:n], boxes, batch["box"][:n],
                                                            batch["label"][:n], res.targets[:n])
