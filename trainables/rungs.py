"""Rung evaluations inside the Train loop (early stopping, issue #15).

After each rung epoch of ``cfg.rungs.epochs`` (epochs trained, 1-based) every rank evaluates ``cfg.rungs.keys``
on its shard of a fixed, seeded subset of ``cfg.rungs.images`` test images (``evaluate(..., keys=...)``, the
per-image values gathered across ranks), and the loop reports the values as ``rung/<key>`` with that
epoch's result, plus ``rung`` (the rung epoch) and ``rung/device_seconds`` (device time used so far). The
global torch RNG is restored afterwards, so a rung evaluation never changes what training draws next.
"""
from __future__ import annotations

import math
import time

import torch

from trainables.config import TrialConfig
from trainables.evaluation import EvalContext, evaluate
from trainables.evaluation.suite import subset_indices
from trainables.models import unwrap

PREFIX = "rung/"


def is_rung(cfg: TrialConfig, epoch: int) -> bool:
    """Is 0-based ``epoch`` the last epoch before a rung?"""
    return epoch + 1 in cfg.rungs.epochs


def rung_subset(cfg: TrialConfig, test_set):
    idx = subset_indices(len(test_set), cfg.rungs.images, cfg.evaluation.seed)
    return torch.utils.data.Subset(test_set, idx)


def rung_metrics(cfg: TrialConfig, epoch: int, model, regime, device, test_set, num_classes: int,
                 rank: int, world: int, trained_seconds: float) -> dict[str, float]:
    """``rung/<key>`` (NaN for a key the model/data do not admit), ``rung`` and ``rung/device_seconds``;
    ``{}`` when ``epoch`` is not a rung epoch. The same dict on every rank."""
    if not is_rung(cfg, epoch):
        return {}
    t0, rng = time.perf_counter(), torch.get_rng_state()
    rung_cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"num_images": cfg.rungs.images})})
    ctx = EvalContext(model=regime.eval_model(unwrap(model)), cfg=rung_cfg, regime=regime, device=device,
                      num_classes=num_classes)
    values = evaluate(ctx, rung_subset(cfg, test_set), rank, world, keys=list(cfg.rungs.keys))
    torch.set_rng_state(rng)
    model.train()
    out = {f"{PREFIX}{k}": float(values.get(k, math.nan)) for k in cfg.rungs.keys}
    return out | {"rung": epoch + 1, f"{PREFIX}eval_seconds": time.perf_counter() - t0,
                  f"{PREFIX}device_seconds": (trained_seconds + time.perf_counter() - t0) * world}
