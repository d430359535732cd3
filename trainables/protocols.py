"""Evaluation presets: ``evaluation.preset: fast | paper`` and the papers' protocols (issue #17, item 4).

``fast`` (the default) is the CPU-sized evaluation: every option at its field default in ``config.py``.
``paper`` replaces those defaults by the values one paper's evaluation used, named by ``evaluation.protocol``
(a registered protocol below; ``../shared/ALGORITHMS.md`` is the source of every number). A value written in
the config always wins over the preset, so a departure from the paper is one explicit, commented line.

A protocol sets *how* a metric is computed (attack steps and step size, ε, image counts, noise grids), never
*which* metrics run (``robust.attacks``, ``explain.metrics``) or which key is the objective: the configs
choose those (Top-GAP's label-free robust accuracy is the ``robust/<attack>_agree`` key). Options a paper does
not specify keep their ``fast`` defaults. ``num_images: 100000`` means "the whole test split" (the subset is
capped at the split's size).

Step sizes: arx's PGD step is ``pgd_step_ratio · ε / pgd_steps``, so a paper's absolute step ``a`` at ``S``
steps is ``pgd_step_ratio = a · S / ε``; a config that overrides ``pgd_steps`` alone keeps the protocol's ratio
(the total distance travelled), not its absolute step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainables.registry import Registry

WHOLE_SPLIT = 100_000


@dataclass(frozen=True)
class Protocol:
    paper: str              # file in ../shared/papers/ (without .txt)
    source: str             # the ALGORITHMS.md section and table
    values: dict[str, Any] = field(default_factory=dict)   # nested, over EvalConfig's fields


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")


def register_protocol(name: str, protocol: Protocol) -> None:
    PROTOCOLS.register(name)(protocol)


# ---- fgsm-at-gradcam-iou-pets (ALGORITHMS.md §1.2-1.3) ----------------------------------------------------------
register_protocol("gradcam_iou_pets", Protocol(
    "fgsm-at-gradcam-iou-pets", "§1.3: all 3,669 test images; FGSM test set; Grad-CAM of the predicted class",
    {"num_images": WHOLE_SPLIT,
     "explain": {"cam": "gradcam", "cam_threshold": 0.5, "box_rule": "largest", "box_correct_only": False}}))

# ---- top-gap (§2.3): Foolbox's L-inf PGD with its default step ε/30 and random start ---------------------------------
for _name, _eps, _steps, _src in (("topgap", 1 / 255, 40, "§2.3 / Table 3: ε = 1/255, PGD-40"),
                                  ("topgap_cifar10", 8 / 255, 20, "§2.3 / Table 4: ε = 8/255, PGD-20")):
    register_protocol(_name, Protocol(
        "top-gap", _src + " (Foolbox LinfPGD step ε/30, random start); robust accuracy = robust/<attack>_agree",
        {"num_images": WHOLE_SPLIT,
         "robust": {"eps": _eps, "pgd_steps": _steps, "pgd_step_ratio": _steps / 30, "random_start": True}}))

# ---- at-feature-map-smoothing (§3.2, §3.4): the evaluation attack is not stated; the training PGD of the code ----
_NAG_EXPLAIN = {"noise_sigmas": (0.01, 0.03, 0.05, 0.07, 0.09, 0.1, 0.15, 0.2), "ssim_win_size": 5,
                "ssim_normalise": False, "ssim_data_range": 2.0, "ros_samples": 5, "ros_noise": (0.02, 0.2),
                "ros_log10": True, "road_fractions": tuple(round(0.01 + 0.05 * i, 2) for i in range(20)),
                "road_baseline": "first", "road_noise": 0.01}
for _name, _robust, _src in (
        ("nag_fmnist", {"eps": 0.1, "pgd_steps": 40, "pgd_step_ratio": 4.0}, "§3.2: ε 0.1, step ε/10, 40 steps"),
        ("nag_cifar10", {"pgd_steps": 7, "pgd_step_ratio": 1.75}, "§3.2 code A: step ε/4, 7 steps (ε: the config's)"),
        ("nag_imagenette", {"eps": 1 / 255, "pgd_steps": 20, "pgd_step_ratio": 40.0}, "§3.2: ε 1/255, step 2/255, 20 steps")):
    register_protocol(_name, Protocol(
        "at-feature-map-smoothing", _src + "; §3.4 SSIM σ grid (8 values), ROS, ROAD 1 %..96 % (code)",
        {"num_images": 1000, "robust": {**_robust, "random_start": True}, "explain": _NAG_EXPLAIN}))

# ---- art-attributional-robustness (§4.4-4.5): top-k IFIA with IG, 1,000 images -----------------------------------
register_protocol("art", Protocol(
    "art-attributional-robustness-supp", "§4.5: IFIA ε 8/255, 50 steps of 1/255, k 100, 100 IG points (attack), "
                                         "101 (metrics), 1,000 images; §4.4 validation PGD-40, step 2/255",
    {"num_images": WHOLE_SPLIT,
     "robust": {"eps": 8 / 255, "pgd_steps": 40, "pgd_step_ratio": 10.0, "random_start": True},
     "explain": {"ifia_eps": 8 / 255, "ifia_steps": 50, "ifia_step": 1 / 255, "attr_topk": 100,
                 "ifia_ig_steps": 100, "ig_steps": 101, "ig_rule": "trapezoid", "attr_images": 1000, "ifia_beta": 50.0}}))

# ---- lipschitz-adversarial-explanations (§5.4): ARA on 1,000 images, 450 ramped steps ----------------------------
register_protocol("lipschitz", Protocol(
    "lipschitz-adversarial-explanations", "§5.4: ARA / BTR-ARA on 1,000 images, 450 steps (ramp, total 20, momentum 0.9)",
    {"num_images": 2000, "robust": {"ara_images": 1000, "ara_steps": 450, "ara_rule": "ramp", "ara_momentum": 0.9,
                                    "ara_misclassified": "zero"}}))


def _merge(defaults: dict, given: dict) -> dict:
    """``given`` over ``defaults``, nested dicts merged key by key (what the config writes wins)."""
    out = dict(defaults)
    for k, v in given.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_preset(data: Any) -> Any:
    """The raw ``evaluation`` mapping with the preset's values under the written ones (pydantic before-validator)."""
    if not isinstance(data, dict):
        return data
    preset, name = data.get("preset", "fast"), data.get("protocol")
    if name is not None and name not in PROTOCOLS.names():
        raise ValueError(f"unknown evaluation.protocol '{name}' (one of: {', '.join(PROTOCOLS.names())})")
    if preset != "paper":
        return data
    if name is None:
        raise ValueError(f"evaluation.preset: paper needs evaluation.protocol (one of: {', '.join(PROTOCOLS.names())})")
    return _merge(PROTOCOLS.get(name).values, data)


def describe_preset(ecfg) -> str:
    """One line for ``--dry-run``: the evaluation preset and, for ``paper``, the protocol's source."""
    if ecfg.preset != "paper":
        return f"evaluation: preset fast (CPU-sized defaults{'; protocol ' + ecfg.protocol if ecfg.protocol else ''})"
    p = PROTOCOLS.get(ecfg.protocol)
    return f"evaluation: preset paper, protocol {ecfg.protocol} ({p.paper}, ALGORITHMS.md {p.source})"
