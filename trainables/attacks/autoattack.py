"""AutoAttack (Croce & Hein 2020): a fixed sequence of attacks, each run only on the images every earlier
attack left correctly classified (the reference's ``MultiAttack`` / ``run_standard_evaluation``).

``autoattack(model, x, y, eps, norm=..., version=...) -> x_adv`` with ``version``:

- ``standard``: APGD-CE, APGD-T (targeted DLR), FAB-T (multi-targeted FAB), Square — the RobustBench protocol;
- ``nofab``: APGD-CE, APGD-T, Square — the standard sequence without FAB-T, for installations without
  torchattacks (FAB-T rarely breaks an image the APGD attacks left, Croce & Hein Table 2; documented deviation).

With fewer than 4 classes APGD-T is skipped (its loss needs the 4th-largest logit).

APGD and Square are arx's own batched ports (``apgd.py``, ``square.py``); FAB-T is torchattacks' ``FAB``
(public API, ``multi_targeted=True``) run on the same victim — isolated in ``fab_t`` below. Every stage
draws its random numbers from a fresh CPU generator seeded with ``seed``, as the reference seeds each of its
attacks, so with the same seed the sequence reproduces torchattacks' ``AutoAttack`` (tests).

Settings that differ by source: torchattacks' ``AutoAttack`` runs APGD / APGD-T / FAB-T with 10 steps and
K − 1 target classes, fra31/auto-attack with 100 steps and 9 targets; Square uses 5000 queries in both.
``steps``, ``targets`` and ``queries`` are arguments (arx's defaults: ``evaluation.robust.apgd_steps`` ...).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from trainables.attacks.apgd import apgd, apgd_t
from trainables.attacks.gradient import BNMode, attack_mode
from trainables.attacks.square import square

VERSIONS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "nofab": ("apgd-ce", "apgd-t", "square")}


def fab_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str, steps: int,
          targets: int, seed: int) -> torch.Tensor:
    """Multi-targeted FAB via torchattacks' public ``FAB`` (the only third-party attack arx runs). It seeds
    the global RNG; the caller's global RNG state is restored afterwards."""
    try:
        import torchattacks
    except ImportError as e:  # a clear line instead of a traceback deep in an evaluation
        raise RuntimeError("AutoAttack version 'standard' runs FAB-T from torchattacks: pip install "
                           "'arx[robust]' (or set evaluation.robust.autoattack_version: nofab)") from e
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        atk = torchattacks.FAB(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, steps=steps, n_restarts=1,
                               multi_targeted=True, n_classes=targets + 1, seed=seed)
        return atk(x, y)


def _stage(name: str, eps: float, norm: str, steps: int, targets: int, queries: int, seed: int) -> Callable:
    cpu = lambda: torch.Generator().manual_seed(seed)  # noqa: E731 — a fresh stream per stage, as the reference
    return {
        "apgd-ce": lambda m, x, y: apgd(m, x, y, eps, norm=norm, steps=steps, loss="ce", generator=cpu()),
        "apgd-dlr": lambda m, x, y: apgd(m, x, y, eps, norm=norm, steps=steps, loss="dlr", generator=cpu()),
        "apgd-t": lambda m, x, y: apgd_t(m, x, y, eps, norm=norm, steps=steps, targets=targets, generator=cpu()),
        "fab-t": lambda m, x, y: fab_t(m, x, y, eps, norm=norm, steps=steps, targets=targets, seed=seed),
        "square": lambda m, x, y: square(m, x, y, eps, norm=norm, queries=queries, generator=cpu()),
    }[name]


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
               version: str = "standard", steps: int = 100, targets: int | None = None, queries: int = 5000,
               seed: int = 0, bn: BNMode = "keep", on_stage: Callable[[str, int], None] | None = None) -> torch.Tensor:
    """``x: [B,C,H,W]`` in [0,1], ``y: [B]`` -> ``x_adv`` in the ε-ball: for each image the first stage's
    misclassified image, else the clean image. ``targets`` defaults to min(9, K − 1); ``on_stage(name,
    n_robust)`` is called after each stage (progress, per-stage robust counts)."""
    x, adv = x.detach(), x.detach().clone()
    with attack_mode(model, x, bn), torch.no_grad():
        logits = model(x)
        robust = logits.argmax(1) == y
    k = targets if targets is not None else min(9, logits.shape[1] - 1)
    for name in VERSIONS[version]:
        idx = robust.nonzero()[:, 0]
        if not len(idx):
            break
        if name == "apgd-t" and logits.shape[1] < 4:
            continue  # the targeted DLR loss needs 4 classes (as in the reference); FAB-T still runs
        out = _stage(name, eps, norm, steps, k, queries, seed)(model, x[idx], y[idx])
        with attack_mode(model, x, bn), torch.no_grad():
            broken = model(out).argmax(1) != y[idx]
        robust[idx[broken]] = False
        adv[idx[broken]] = out[broken]
        if on_stage:
            on_stage(name, int(robust.sum()))
    return adv
