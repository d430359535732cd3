"""A fast, numerically equivalent copy of an eval-mode model for evaluation attacks.

``inference_copy(model)`` returns a deep copy with every Conv→BatchNorm pair folded into one convolution
(``torch.fx.experimental.optimization.fuse``: W' = W·γ/σ, b' = (b − μ)·γ/σ + β, exact in real arithmetic,
float rounding ~1e-7 relative), parameters frozen, in channels_last memory format for 4-D inputs. An
attack's forward + input-backward then skips the BN kernels and the NCHW↔blocked reorders of oneDNN / cuDNN
convolutions, which is where most of its time goes at small image sizes (``arx bench attacks``).

It computes the same function as ``model`` in eval mode (running BN statistics) — the network the
evaluation measures — so a white-box attack on the copy is a white-box attack on the model; robust
accuracy is still read from the original model's logits. Adversarial images are not bit-identical to an
attack on the unfused model (rounding differences are amplified through ReLU switching over PGD steps).
Models that FX cannot trace (data-dependent control flow) are copied unfused (logged at DEBUG level).
Only for eval mode: train-mode BN depends on the batch and cannot be folded.
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def inference_copy(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """``model`` (eval mode) -> a frozen, BN-folded (where traceable), channels_last copy."""
    if any(m.training for m in model.modules()):
        raise ValueError("inference_copy needs an eval-mode model (train-mode batch norm cannot be folded)")
    try:
        from torch.fx.experimental.optimization import fuse

        out = fuse(model)  # copies; folds Conv/BN pairs whose conv output feeds only the BN
    except Exception as e:  # noqa: BLE001 - FX raises many types for untraceable code; fall back to a copy
        log.debug("inference_copy: FX could not trace %s (%s); copying unfused", type(model).__name__, e)
        out = copy.deepcopy(model)
    out.eval().requires_grad_(False)
    return out.to(memory_format=torch.channels_last) if channels_last else out
