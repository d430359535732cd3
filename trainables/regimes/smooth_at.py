"""PGD adversarial training with a feature-map smoothing block (at-feature-map-smoothing, Algorithm 1, eq. 15
and 17; ALGORITHMS.md §3.1-3.2).

The ``pgd_at`` regime plus one hook: ``build_model`` inserts a ``SmoothBlock``
(``trainables.models.smoothing``) after stage ``placement`` of the backbone. The training step is
``pgd_at``'s, unchanged (Madry's min-max: PGD images, attacked through the block, whose filter is
differentiable, then cross-entropy on them), so A (``pgd_at``) and G (``smooth_at``) differ only by the
block when they share ``eps`` / ``alpha`` / ``steps`` / ``norm`` / ``bn``. The baselines of the paper's
N / A / G comparison are the ``standard`` and ``pgd_at`` regimes.

Paper vs code (ALGORITHMS.md §3.2, §6): the paper's CIFAR ε = 0.1 is implausible and the code trained A and
G with different ε in *normalised* space; here ε is in [0,1] pixels and should be the same for A and G
(R: 8/255, 7-10 steps for CIFAR-10; 0.1 / step 0.01 / 40 for FMNIST; 1/255 / step 2/255 / 20 for
ImageNette). Not reproduced: the cleverhans attack on *predicted* labels (FMNIST/CIFAR code) and the
ImageNette code's coin flip between clean and adversarial batches.
"""
from __future__ import annotations

from pydantic import Field, field_validator

from trainables.models.smoothing import Border, ConvInit, FilterName, Sigma, insert_smooth_block
from trainables.regimes.base import register_regime
from trainables.regimes.pgd_at import PGDAT


def _image_size(trial_cfg) -> int:
    return trial_cfg.dataset.image_size if trial_cfg is not None else 64


@register_regime("smooth_at")
class SmoothAT(PGDAT):
    class Params(PGDAT.Params):
        filter: FilterName = Field("gaussian", description="fixed low-pass filter (kornia)")
        placement: int = Field(1, ge=1, le=3, description="insert the block after stage 1, 2 or 3 of the backbone")
        kernel_size: int = Field(3, ge=1, description="odd filter size (paper: 3)")
        sigma: Sigma = Field("feature", description="Gaussian σ: 'feature' (code: from the map size), 'ksize', or a number")
        border: Border = Field("code", description="padding: code = reflect (gaussian, mean) / zeros (median)")
        conv_init: ConvInit = Field("kaiming", description="1x1 conv init: kaiming (code), default, zeros (identity)")

        @field_validator("kernel_size")
        @classmethod
        def _odd(cls, v: int) -> int:
            if v % 2 == 0:
                raise ValueError(f"must be odd (3, 5, ...), got {v}")
            return v

    def build_model(self, model):
        p = self.params
        return insert_smooth_block(model, p.placement, _image_size(self.trial_cfg), filter=p.filter,
                                   kernel_size=p.kernel_size, sigma=p.sigma, border=p.border, conv_init=p.conv_init)
