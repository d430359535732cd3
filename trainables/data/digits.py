"""``digits``: scikit-learn's bundled handwritten digits pasted onto crops of its bundled sample photographs.

Embedded and offline (``sklearn.datasets.load_digits`` + ``load_sample_images``), 10 classes. Background:
a random square crop of one of the two photographs (one of 8 sides in [min_crop, max_crop] x the photo
height, any position, random horizontal flip), resized with antialiasing to ``image_size``. Object: one
8x8 glyph scaled bilinearly to a square of side ``U(min_size, max_size) * image_size`` pixels, drawn in a
contrasting ink (bright on dark surroundings, dark on bright ones) with opacity 2 x its grey level.
The mask is where the glyph's grey level is at least half its peak; the box is exactly the mask's extent
(x2 = max col + 1). The 1797 glyphs are split 1437 / 360 into disjoint train / test pools by
``dataset.seed``, so test images show held-out glyphs; everything is deterministic by that seed.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainables.data.base import DatasetSpec, Split, TensorSplit, register_dataset
from trainables.data._cache import cached_split
from trainables.data.shapes import mask_boxes

MIN_SIDE_PX = 8.0  # one pixel per glyph cell at least
CROP_LEVELS = 8  # distinct photo crop sizes (each a cached antialiased rescale of the photo)
_PIXELS_PER_CHUNK = 1 << 22


@lru_cache(maxsize=1)
def _sources() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Glyphs [1797,1,8,8] (each scaled to peak 1), labels [1797], photos [2,3,427,640] in [0,1]."""
    from sklearn.datasets import load_digits, load_sample_images

    digits = load_digits()
    glyphs = torch.from_numpy(digits.images).float()[:, None]
    glyphs = glyphs / glyphs.amax((2, 3), keepdim=True)
    photos = torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).float() / 255
    return glyphs, torch.from_numpy(digits.target).long(), photos


@lru_cache(maxsize=64)
def _scaled_photo(k: int, side: int, crop: float) -> torch.Tensor:
    """Photo ``k`` resized (antialiased) so that a crop of ``crop`` x its height becomes ``side`` pixels."""
    photo = _sources()[2][k]
    scale = side / (crop * photo.shape[1])
    size = (max(side, round(photo.shape[1] * scale)), max(side, round(photo.shape[2] * scale)))
    return F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


class DigitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    n_train: int = Field(1437, ge=1, description="images drawn from the 1437 train glyphs (repeats if more)")
    n_test: int = Field(360, ge=1, description="images drawn from the 360 held-out glyphs")
    min_size: float = Field(0.3, gt=0, le=1, description="smallest digit side, fraction of the image side")
    max_size: float = Field(0.6, gt=0, le=1, description="largest digit side, fraction of the image side")
    min_crop: float = Field(0.3, gt=0, le=1, description="smallest photo crop, fraction of the photo height")
    max_crop: float = Field(0.9, gt=0, le=1, description="largest photo crop, fraction of the photo height")

    @model_validator(mode="after")
    def _ranges(self):
        for lo, hi in (("min_size", "max_size"), ("min_crop", "max_crop")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must be <= {hi} ({getattr(self, hi)})")
        return self


def _backgrounds(rng: np.random.Generator, n: int, side: int, p: DigitsParams) -> torch.Tensor:
    """Random square crops [n,3,S,S] of the photos: one of ``CROP_LEVELS`` crop sizes, any position, flips."""
    levels = np.linspace(p.min_crop, p.max_crop, CROP_LEVELS)
    photo, level = rng.integers(0, 2, n), rng.integers(0, CROP_LEVELS, n)
    fy, fx, flip = rng.random(n), rng.random(n), rng.random(n) < 0.5
    out = torch.empty(n, 3, side, side)
    for i in range(n):  # plain slicing: far cheaper than fancy indexing for a few thousand crops
        img = _scaled_photo(int(photo[i]), side, float(levels[level[i]]))
        y0, x0 = int(fy[i] * (img.shape[1] - side + 1)), int(fx[i] * (img.shape[2] - side + 1))
        crop = img[:, y0:y0 + side, x0:x0 + side]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def _place(rng: np.random.Generator, glyphs: torch.Tensor, side: int, p: DigitsParams) -> torch.Tensor:
    """Glyphs scaled to side s and translated inside the image: alpha maps [n,1,S,S] in [0,1]."""
    n = len(glyphs)
    s = np.clip(rng.uniform(p.min_size, p.max_size, n) * side, min(MIN_SIDE_PX, side), side)
    x0, y0 = rng.random(n) * (side - s), rng.random(n) * (side - s)
    centres = np.arange(side) + 0.5
    # pixel centre -> glyph coordinate in [-1, 1] (grid_sample, align_corners=False)
    gx = torch.from_numpy((2 * (centres[None] - x0[:, None]) / s[:, None] - 1).astype(np.float32))
    gy = torch.from_numpy((2 * (centres[None] - y0[:, None]) / s[:, None] - 1).astype(np.float32))
    grid = torch.stack([gx[:, None, :].expand(n, side, side), gy[:, :, None].expand(n, side, side)], -1)
    return F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def render(rng: np.random.Generator, idx: np.ndarray, side: int, p: DigitsParams):
    """Images uint8 [n,3,S,S], labels [n], boxes [n,4], masks uint8 [n,S,S] for glyph indices ``idx``."""
    glyphs, targets, _ = _sources()
    n = len(idx)
    back = _backgrounds(rng, n, side, p)
    alpha = _place(rng, glyphs[torch.from_numpy(idx)], side, p)
    mask = alpha >= 0.5 * alpha.amax((2, 3), keepdim=True)
    lum = torch.einsum("nchw,c->nhw", back, torch.tensor([0.299, 0.587, 0.114]))[:, None]
    local = (lum * mask).sum((2, 3)) / mask.sum((2, 3))  # surroundings' brightness under the digit
    bright, dark = rng.uniform(0.85, 1.0, (n, 3)), rng.uniform(0.0, 0.15, (n, 3))
    ink = torch.from_numpy(np.where(local.numpy() < 0.5, bright, dark)).float()[:, :, None, None]
    opacity = (2 * alpha).clamp_(max=1)  # glyph strokes are grey levels: draw them opaque
    img = torch.lerp(back, ink.expand_as(back), opacity)
    images = img.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    masks = mask[:, 0].numpy()
    return images, targets[torch.from_numpy(idx)], torch.from_numpy(mask_boxes(masks)), torch.from_numpy(masks)


def glyph_pools(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train (80 %) / test (20 %) glyph indices into ``load_digits()``, by seed."""
    order = np.random.default_rng([seed, 2]).permutation(len(_sources()[0]))
    cut = int(0.8 * len(order))  # 1437 / 360
    return order[:cut], order[cut:]


@register_dataset("digits")
class Digits(DatasetSpec):
    Params = DigitsParams
    has_boxes = True
    has_masks = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._cache: dict[str, TensorSplit] = {}

    @property
    def num_classes(self) -> int:
        return 10

    def load(self, split: Split) -> TensorSplit:
        if split not in self._cache:
            self._cache[split] = cached_split(self, split, self._generate)  # per-node disk cache (_cache.py)
        return self._cache[split]

    def _generate(self, split: Split) -> TensorSplit:
        p, side = self.params, self.cfg.image_size
        train_pool, test_pool = glyph_pools(self.cfg.seed)
        pool, n = (train_pool, p.n_train) if split == "train" else (test_pool, p.n_test)
        rng = np.random.default_rng([self.cfg.seed, 0 if split == "train" else 1])
        idx = rng.choice(pool, n, replace=n > len(pool))
        chunk = max(1, _PIXELS_PER_CHUNK // (side * side))
        parts = [render(rng, idx[i:i + chunk], side, p) for i in range(0, n, chunk)]
        images, labels, boxes, masks = (torch.cat(x) for x in zip(*parts))
        return TensorSplit(images, labels, boxes, masks.to(torch.uint8))
