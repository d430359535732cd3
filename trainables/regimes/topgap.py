"""Top-GAP: FPN head + Top-GAP(k) pooling + λ‖X‖₁ on the CAM (top-gap paper §3, eq. 3; ALGORITHMS.md §2).

One step on a batch (x in [0,1], y):
1. (``adv`` set) x_adv from ``trainables.attacks.generators`` (kind ``adv``, ``eps=adv_eps``, ``adv_params``
   e.g. steps/alpha/bn; defaults as ``fgsm_at`` / ``pgd_at``: ε 4/255, PGD 7 steps of 2.5·ε/7; crafted on
   the unwrapped model in its train mode, as the authors' codes do):
   ``fgsm`` trains on the concatenation [x; x_fgsm] with labels [y; y] (50/50 clean + FGSM, as
   ``fgsm_at``); ``pgd`` trains on the PGD images only (Madry).
2. ``logits, X = model(x, with_cam=True)``: X the CAM ``[B,K,h,w]``, logits = Top-GAP(X, k).
3. loss = λ·‖X‖₁ + CE(softmax(logits), y)  (eq. 3).

Normalisation of ‖X‖₁ (the paper does not say; ALGORITHMS.md §2.2 R): ``l1_norm: mean`` (default) is the
mean of |X| over all B·K·h·w entries of the raw (signed, un-scaled) CAM, so λ = 1 — the paper's value "for
most datasets" — weighs it like the CE; ``sum`` is Σ_{k,h,w} |X| per image averaged over the batch (grows
with K·h·w: λ must shrink accordingly). ``train/cam_l1`` logs the mean |X| whichever is used.

Ablation switches (Table 8; all 8 combinations valid): ``fpn`` (off: a 1×1 conv on the standard
network's last map), ``l1`` (off: λ = 0), ``topgap`` (off: GAP, i.e. k = all pixels). With all three off
the model equals the standard network. k: ``k`` (pixel count) or ``k_frac`` (fraction of the CAM's
pixels, default 256/56² — the paper's k = 256 at 224 px, = k 4 on the 7×7 no-FPN map, Table 8).

Learning rate: the FPN head is two stacked linear layers with wide fan-in. On shapes (smallcnn, 32 px)
AdamW at 2e-3 left the FPN configurations at 0.27-0.78 test accuracy after 8 epochs; at 5e-4 (10 epochs)
they reached 0.92-0.99, the standard network 0.97.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from trainables.errors import ConfigError
from trainables.models import unwrap
from trainables.models.topgap import build_topgap
from trainables.models.topk_pool import PAPER_K_FRAC, resolve_k
from trainables.regimes.base import Regime, RegimeParams, full_precision, register_regime


def cam_l1(cam: torch.Tensor, norm: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """‖X‖₁ of ``cam: [B,K,h,w]``: mean over all entries, or per-image sum averaged over the batch."""
    a = full_precision(cam).abs()
    return a.mean() if norm == "mean" else a.flatten(1).sum(1).mean()


def topgap_loss(logits: torch.Tensor, cam: torch.Tensor, y: torch.Tensor, lam: float,
                norm: Literal["mean", "sum"] = "mean") -> tuple[torch.Tensor, dict]:
    """Eq. 3: ``lam·‖cam‖₁ + CE(logits, y)`` with ``logits = TopGAP(cam, k)``; returns (loss, logs)."""
    ce = F.cross_entropy(logits.float(), y)
    l1 = cam_l1(cam, norm) if lam > 0 else cam.new_zeros((), dtype=torch.float32)
    logs = {"train/acc": (logits.argmax(1) == y).float().mean().detach(), "train/ce": ce.detach(),
            "train/cam_l1": cam.detach().float().abs().mean()}
    return ce + lam * l1, logs


def _device(model) -> torch.device:
    return next(model.parameters()).device


@register_regime("topgap")
class TopGap(Regime):
    cam_kind = "native"

    class Params(RegimeParams):
        k: int | None = Field(None, ge=1, description="Top-GAP k as a CAM pixel count (exclusive with k_frac)")
        k_frac: float | None = Field(None, gt=0, le=1, description="k as a fraction of the CAM's pixels; default 256/56^2")
        lam: float = Field(1.0, ge=0, description="λ of eq. 3 (paper: 1 for most datasets, with l1_norm mean)")
        l1_norm: Literal["mean", "sum"] = Field("mean", description="‖X‖₁: mean over B·K·h·w entries, or per-image sum")
        fpn: bool = Field(True, description="Table 8 switch: FPN head (off: 1x1 conv on the last map)")
        l1: bool = Field(True, description="Table 8 switch: the λ‖X‖₁ term")
        topgap: bool = Field(True, description="Table 8 switch: Top-GAP(k) pooling (off: GAP)")
        levels: int | None = Field(None, ge=1, le=6, description="feature maps the FPN reads (default: 3 VGG/DenseNet/smallcnn, else 4)")
        cam_reduction: int | None = Field(None, ge=1, description="stride of the largest map = the CAM's (default 4; smallcnn 2)")
        width: int = Field(256, ge=1, description="filters of the FPN's 3x3 convs (Fig. 2: 256)")
        upsample: Literal["nearest", "bilinear"] = Field("nearest", description="FPN upsampling mode (paper: unspecified)")
        adv: Literal["none", "fgsm", "pgd"] = Field("none", description="compose with adversarial training")
        adv_eps: float = Field(4 / 255, gt=0, le=1, description="L-inf AT budget in [0,1] pixels (as fgsm_at / pgd_at)")
        adv_params: dict[str, Any] = Field(default_factory=dict, description="extra generator options (steps, alpha, bn)")

        @model_validator(mode="after")
        def _valid(self):
            if self.k is not None and self.k_frac is not None:
                raise ValueError("give k (pixel count) or k_frac (fraction of the CAM), not both")
            if self.adv != "none":
                from trainables.attacks.generators import validate_generator

                validate_generator(self.adv, self.adv_kwargs())
            return self

        def adv_kwargs(self) -> dict[str, Any]:
            steps = {"steps": 7} if self.adv == "pgd" else {}  # pgd_at's default (Madry's CIFAR setting)
            return {**steps, **self.adv_params, "eps": self.adv_eps}

    def __init__(self, params=None, trial_cfg=None):
        super().__init__(params, trial_cfg)
        self.adversary = None
        if self.params.adv != "none":
            from trainables.attacks.generators import build_generator

            self.adversary = build_generator(self.params.adv, self.params.adv_kwargs())

    def _pool_k(self) -> dict:
        p = self.params
        if not p.topgap:
            return {"k": None, "k_frac": 1.0}
        return {"k": p.k, "k_frac": None} if p.k is not None else {"k": None, "k_frac": p.k_frac or PAPER_K_FRAC}

    def build_model(self, model):
        p = self.params
        drop = self.trial_cfg.model.drop_rate if self.trial_cfg is not None else 0.0
        out = build_topgap(model, fpn=p.fpn, levels=p.levels, cam_reduction=p.cam_reduction, width=p.width,
                           drop_rate=drop, upsample=p.upsample, **self._pool_k())
        if self.trial_cfg is not None:
            self._check_k(out, self.trial_cfg.dataset.image_size)
        return out

    def effective(self, model) -> dict:
        """The k actually pooled (pixel count of this model's CAM), its share of the CAM and the CAM size."""
        was = model.training
        size = self.trial_cfg.dataset.image_size if self.trial_cfg is not None else 64
        with torch.no_grad():
            h, w = model.eval().cam(torch.zeros(1, model.in_chans, size, size, device=_device(model))).shape[-2:]
        model.train(was)
        k = resolve_k(h * w, **self._pool_k())
        return {"k": k, "k_frac": k / (h * w), "cam_pixels": h * w}

    def _check_k(self, model, image_size: int) -> None:
        """A pixel-count k must fit the CAM of this image size (one config line if not)."""
        was = model.training
        with torch.no_grad():
            h, w = model.eval().cam(torch.zeros(1, model.in_chans, image_size, image_size)).shape[-2:]
        model.train(was)
        try:
            resolve_k(h * w, **self._pool_k())
        except ValueError as e:
            raise ConfigError(f"regime.params.k: {e}") from None

    def loss(self, model, x, y):
        p = self.params
        if self.adversary is not None:
            x_adv = self.adversary(unwrap(model), x, y)
            x, y = (torch.cat([x, x_adv]), torch.cat([y, y])) if p.adv == "fgsm" else (x_adv, y)
        logits, cam = model(x, with_cam=True)
        return topgap_loss(logits, cam, y, p.lam if p.l1 else 0.0, p.l1_norm)
