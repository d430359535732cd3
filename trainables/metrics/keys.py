"""The one table of metric keys and their directions.

The sweep spec (objectives, constraints), Optuna (directions) and the Pareto code all read this table;
MLflow metric names are exactly these keys. ``group`` is the evaluation group whose metric families
(``trainables/evaluation/``) produce the key. A new family adds its rows here, or at import time with
``register_key(MetricKey(...))`` (e.g. a family defined outside this package).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class MetricKey:
    key: str
    direction: Direction
    group: str
    doc: str


_TABLE = [
    MetricKey("acc/top1", "max", "accuracy", "clean test top-1 accuracy"),
    MetricKey("acc/top5", "max", "accuracy", "clean test top-5 accuracy"),
    MetricKey("robust/fgsm", "max", "robustness", "accuracy (vs labels) on FGSM images at the eval ε"),
    MetricKey("robust/pgd", "max", "robustness", "accuracy (vs labels) on L-inf PGD images at the eval ε"),
    MetricKey("robust/pgd_l2", "max", "robustness", "accuracy (vs labels) on L2 PGD images at the eval L2 ε"),
    MetricKey("robust/fgsm_agree", "max", "robustness", "share of predictions unchanged by FGSM (Top-GAP's definition)"),
    MetricKey("robust/pgd_agree", "max", "robustness", "share of predictions unchanged by L-inf PGD"),
    MetricKey("robust/pgd_l2_agree", "max", "robustness", "share of predictions unchanged by L2 PGD"),
    MetricKey("robust/apgd_ce", "max", "robustness", "accuracy (vs labels) on APGD-CE images at the eval ε (L-inf)"),
    MetricKey("robust/apgd_dlr", "max", "robustness", "accuracy (vs labels) on APGD-DLR images at the eval ε (L-inf)"),
    MetricKey("robust/square", "max", "robustness", "accuracy (vs labels) under the gradient-free Square attack (L-inf)"),
    MetricKey("robust/autoattack", "max", "robustness", "AutoAttack robust accuracy (APGD-CE, APGD-T, FAB-T, Square; L-inf)"),
    MetricKey("robust/autoattack_l2", "max", "robustness", "AutoAttack robust accuracy at the L2 eval ε"),
    MetricKey("sanity/flags", "min", "robustness", "gradient-masking checks flagged (evaluation/sanity.py; 0 = none)"),
    MetricKey("robust/fgsm_top5", "max", "robustness", "top-5 accuracy on FGSM images"),
    MetricKey("robust/pgd_top5", "max", "robustness", "top-5 accuracy on L-inf PGD images"),
    MetricKey("robust/ara", "max", "robustness", "accuracy-robustness area from minimal RMSE distances (g_adv)"),
    MetricKey("robust/btr_ara", "max", "robustness", "ARA for the better-than-random goal (g_btr)"),
    MetricKey("explain/box_iou", "max", "explain", "IoU of the CAM box (threshold -> largest contour) and the GT box"),
    MetricKey("explain/box_iou_random", "max", "explain",
              "chance level of box_iou on the same images: mean IoU of uniform random boxes (a baseline)"),
    MetricKey("explain/mask_iou", "max", "explain", "IoU of the thresholded CAM and the GT mask"),
    MetricKey("explain/pointing", "max", "explain", "pointing game: CAM maximum inside the GT box"),
    MetricKey("explain/cam_l1", "min", "explain", "mean of the min-max-normalised CAM (sparsity)"),
    MetricKey("explain/gini_vg", "max", "explain", "Gini index of vanilla-gradient attributions"),
    MetricKey("explain/gini_ig", "max", "explain", "Gini index of integrated-gradient attributions"),
    MetricKey("explain/ssim_vg", "max", "explain", "SSIM of VG maps under prediction-preserving Gaussian noise"),
    MetricKey("explain/ros_vg", "min", "explain", "relative output stability of VG maps"),
    MetricKey("explain/road_aopc", "max", "explain", "ROAD AOPC, most-relevant-first (faithfulness)"),
    MetricKey("explain/attr_topk", "max", "explain", "top-k intersection of clean and IFIA-attacked attributions"),
    MetricKey("explain/attr_kendall", "max", "explain", "Kendall tau of clean and IFIA-attacked attributions"),
    MetricKey("train/loss", "min", "train", "mean training loss of the epoch"),
    MetricKey("train/acc", "max", "train", "training accuracy of the epoch (on the regime's training inputs)"),
    MetricKey("train/epoch_time", "min", "train", "seconds per epoch"),
    MetricKey("train/images_per_s", "max", "train", "training throughput, all workers"),
    MetricKey("train/lr", "max", "train", "learning rate at the end of the epoch"),
    MetricKey("train/eps", "max", "train", "AT regimes: training ε of the epoch (ramps with eps_warmup)"),
    MetricKey("train/psi", "max", "train", "Lipschitz regime: ψ at the end of the epoch"),
    MetricKey("cost/device_seconds", "min", "cost", "wall seconds x workers of the whole trial"),
    MetricKey("cost/eval_seconds", "min", "cost", "seconds spent in the final evaluation"),
]

class _Keys(dict):
    """The table, plus the per-config family of shift keys ``shift/<name>/acc`` (``evaluation.shift``), plus
    the rows metric-family modules add with ``register_key`` (e.g. ``shift/corruption/<type>``): an unknown
    key first imports the families once, so a fresh process (a sweep spec's objectives) knows them too."""

    _SHIFT = re.compile(r"^shift/[A-Za-z0-9_.-]+/acc$")
    _populated = False

    def _load_families(self) -> bool:
        if _Keys._populated:
            return False
        _Keys._populated = True
        from trainables.evaluation import FAMILIES

        FAMILIES.populate()
        return True

    def __contains__(self, key) -> bool:
        if dict.__contains__(self, key) or (isinstance(key, str) and bool(self._SHIFT.match(key))):
            return True
        return self._load_families() and dict.__contains__(self, key)

    def __missing__(self, key: str) -> MetricKey:
        if isinstance(key, str) and self._SHIFT.match(key):
            return MetricKey(key, "max", "accuracy", "top-1 accuracy on an evaluation.shift dataset")
        if self._load_families() and dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        raise KeyError(key)


KEYS: dict[str, MetricKey] = _Keys({m.key: m for m in _TABLE})


def register_key(metric: MetricKey) -> MetricKey:
    """Add a row to the table at runtime (the same row twice is fine; a different one under a known key is not)."""
    if KEYS.get(metric.key, metric) != metric:
        raise ValueError(f"metric key {metric.key!r} is already in the table with other values")
    KEYS[metric.key] = metric
    return metric


def direction(key: str) -> Direction:
    if key not in KEYS:
        raise KeyError(f"unknown metric key {key!r}; valid: {', '.join(sorted(KEYS))}")
    return KEYS[key].direction


def keys_of_group(group: str) -> list[str]:
    return [m.key for m in KEYS.values() if m.group == group]


def is_known(key: str) -> bool:
    """Known keys, including free-form ``train/*`` logs that regimes add (e.g. ``train/l_adv``)."""
    return key in KEYS or key.startswith("train/")
