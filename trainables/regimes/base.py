"""The regime contract: how a regime changes the model and what one training step computes.

A regime is one module with one registered class:

    @register_regime("fgsm_at")
    class FGSMAT(Regime):
        class Params(RegimeParams):
            eps: float = 8 / 255
        def loss(self, model, x, y):
            ...
            return loss, {"train/adv_acc": ...}

- ``build_model(model)``: surgery on a freshly built ``Classifier`` (swap activations, add a head or a
  smoothing block); runs before DDP wrapping, identically on every rank. Default: unchanged.
- ``loss(model, x, y)``: the training objective for one batch. ``model`` may be DDP-wrapped (call it
  for every forward that must sync gradients); ``unwrap(model)`` gives the ``Classifier``. ``x`` is in
  [0,1]. Returns ``(loss, logs)`` where ``logs`` maps ``train/*`` keys to floats or 0-d tensors.
- ``state_dict`` / ``load_state_dict``: state that must survive checkpoints (e.g. adaptive ψ).
- ``epoch_logs()``: extra ``train/*`` values reported once per epoch (e.g. ``train/psi``).
- ``start_epoch(epoch, epochs)``: called before each training epoch (schedules such as the ε warm-up of
  ``WarmupAttackRegime``).
- ``eval_model(model)``: the module the evaluation suite sees (default: the model itself).
- ``cam_kind``: ``"gradcam"`` or ``"native"`` (heads whose output is the CAM, e.g. Top-GAP).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainables.registry import Registry


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32: half / bfloat16 are promoted, float64 is kept (a float64 model stays float64:
    the equivalence tests run regimes in float64, where ``.float()`` would silently round to float32)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class RegimeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Regime:
    Params: ClassVar[type[RegimeParams]] = RegimeParams
    cam_kind: ClassVar[str] = "gradcam"

    def __init__(self, params: dict[str, Any] | RegimeParams | None = None, trial_cfg=None):
        self.params = params if isinstance(params, RegimeParams) else self.Params(**(params or {}))
        self.trial_cfg = trial_cfg

    def build_model(self, model: nn.Module) -> nn.Module:
        return model

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def epoch_logs(self) -> dict[str, float]:
        return {}

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the loop before each training epoch (0-based; also after a resume): schedules."""

    def eval_model(self, model: nn.Module) -> nn.Module:
        return model


def eps_scale(epoch: int, epochs: int, warmup: float) -> float:
    """ε warm-up: the share of the full ε used in ``epoch`` (0-based) when ε ramps linearly over the first
    ``warmup`` share of ``epochs`` (epoch e of W warm-up epochs uses (e + 1) / W; 1 afterwards)."""
    w = math.ceil(warmup * epochs)
    return 1.0 if w <= 0 else min(1.0, (epoch + 1) / w)


class WarmupParams(RegimeParams):
    eps_warmup: float = Field(0.0, ge=0, le=1, description="ramp ε linearly over this share of the epochs (0 = off)")


class WarmupAttackRegime(Regime):
    """An adversarial-training regime whose training attack ε ramps up over ``params.eps_warmup`` of the
    epochs: a subclass builds its attack for a share of the full ε in ``_build_attack(scale)`` (setting
    ``eps_now``); the schedule and the ``train/eps`` log live here."""

    Params: ClassVar[type[RegimeParams]] = WarmupParams

    def __init__(self, params=None, trial_cfg=None):
        super().__init__(params, trial_cfg)
        self.eps_now = 0.0

    def _build_attack(self, scale: float) -> None:
        raise NotImplementedError

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self._build_attack(eps_scale(epoch, epochs, self.params.eps_warmup))

    def epoch_logs(self) -> dict[str, float]:
        return {"train/eps": self.eps_now}


REGIMES: Registry[type[Regime]] = Registry("regime", "trainables.regimes")
register_regime = REGIMES.register


def build_regime(cfg) -> Regime:
    """``cfg``: a ``TrialConfig``."""
    typed = cfg.regime.typed  # the Params object validated with cfg (None only for an unvalidated copy)
    return REGIMES.get(cfg.regime.name)(typed if typed is not None else cfg.regime.params, cfg)


def ce_with_logs(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Cross-entropy and the accuracy log every regime reports."""
    loss = F.cross_entropy(logits, y)
    return loss, {"train/acc": (logits.argmax(1) == y).float().mean().detach()}
