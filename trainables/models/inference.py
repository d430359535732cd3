"""The frozen, BN-folded copy of an eval-mode model that the evaluation attacks differentiate (a model transform).

``inference_copy(model)`` returns a deep copy with every Conv→BatchNorm pair folded into one convolution
(``torch.fx.experimental.optimization.fuse``: W' = W·γ/σ, b' = (b − μ)·γ/σ + β, exact in real arithmetic) and its
parameters frozen, in one of these layouts:

- ``"auto"`` (default): channels_last on CUDA and other accelerators (cuDNN's NHWC kernels, no reorders); on the
  CPU the model's own layout — nothing CPU-specific runs unless asked for;
- ``"cpu"``: the opt-in per-layer CPU plan of :mod:`trainables.models.cpu_plan` (dense-matrix convs on tiny maps,
  subpixel stem input gradient, max pool before ReLU in channels_last; ``arx bench attacks`` measures it);
- ``"channels_last"`` / ``"keep"``: the whole copy in channels_last / as the model is.

The copy computes the same function as ``model`` in eval mode (running BN statistics) — the network the
evaluation measures — so a white-box attack on the copy is a white-box attack on the model; robust accuracy is
still read from the original model's logits. Adversarial images are not bit-identical to an attack on the
unfolded model (float rounding differs, and a gradient of max pooling / ReLU switches at near-ties). Parameters
are frozen: the copy gives first-order input gradients, all an evaluation attack needs. Models that FX cannot
trace (data-dependent control flow) are copied unfolded (logged at DEBUG level). Eval mode only: train-mode BN
depends on the batch and cannot be folded.

``attack_victim(model, kind)`` is what ``evaluation.robust.victim`` names: ``model`` (the model itself),
``folded`` (``inference_copy(model)``, default) or ``cpu_plan`` (``inference_copy(model, "cpu")``).
"""
from __future__ import annotations

import copy
import logging
from typing import Literal

from torch import nn

log = logging.getLogger(__name__)

Layout = Literal["auto", "cpu", "channels_last", "keep"]
Victim = Literal["model", "folded", "cpu_plan"]


def attack_victim(model: nn.Module, kind: Victim = "folded") -> nn.Module:
    """The module the evaluation attacks differentiate for ``evaluation.robust.victim = kind``."""
    if kind == "model":
        return model
    return inference_copy(model, "cpu" if kind == "cpu_plan" else "auto")


def inference_copy(model: nn.Module, layout: Layout = "auto") -> nn.Module:
    """``model`` (eval mode) -> a frozen, BN-folded (where traceable) copy in ``layout`` (module docstring)."""
    import torch

    if any(m.training for m in model.modules()):
        raise ValueError("inference_copy needs an eval-mode model (train-mode batch norm cannot be folded)")
    try:
        from torch.fx.experimental.optimization import fuse

        out = fuse(model)  # copies; folds Conv/BN pairs whose conv output feeds only the BN
    except Exception as e:  # noqa: BLE001 - FX raises many types for untraceable code; fall back to a copy
        log.debug("inference_copy: FX could not trace %s (%s); copying unfolded", type(model).__name__, e)
        out = copy.deepcopy(model)
    out.eval().requires_grad_(False)
    if layout == "auto":
        layout = auto_layout(out)
    if layout == "cpu":
        from trainables.models.cpu_plan import cpu_plan

        return cpu_plan(out)
    if layout == "channels_last":
        return out.to(memory_format=torch.channels_last)
    if layout != "keep":
        raise ValueError(f"inference_copy: unknown layout {layout!r} (auto, cpu, channels_last, keep)")
    return out


def auto_layout(model: nn.Module) -> Layout:
    """What ``layout="auto"`` means for ``model``: ``"keep"`` where its parameters live on the CPU, else
    ``"channels_last"``."""
    p = next(model.parameters(), None)
    return "keep" if p is None or p.device.type == "cpu" else "channels_last"
