"""``shapes``: the embedded default dataset — procedurally drawn shapes on textured backgrounds.

One object per image, drawn inside a square of side ``size ~ U(min_size, max_size) * image_size`` placed
fully inside the image. Class = shape (circle, square, triangle, cross, ring, diamond, x, frame; the first
``num_classes``). The mask is the rasterised shape (pixel centres inside the shape) and the box is exactly
its extent in continuous coordinates (x1 = min col, x2 = max col + 1). Backgrounds: a grey level with a
colour tint, luminance stripes and a gradient, plus per-pixel luminance noise; objects are bright on dark backgrounds
and dark on bright ones.

Spurious cue (a bias test like Waterbirds): with ``spurious_corr = p > 0`` every background is tinted with
one of ``num_classes`` palette hues; in train the tint is the class's own hue with probability ``p``
(otherwise a uniformly random palette hue), in test it is uniformly random (``test_cue: true``: drawn like
train, the in-distribution test). ``p = 0`` (default): the tint hue is continuous and random everywhere.
Train with the cue and ``test_cue: true``, and list the same data without ``test_cue`` under
``evaluation.shift``: the test images are the same shapes (the same random stream), only the tint differs,
so ``acc/top1`` minus ``shift/<name>/acc`` is the model's reliance on the cue (``sweeps/configs/shapes_bias.yaml``).

Everything is drawn vectorised with numpy from ``dataset.seed`` (train and test use independent streams),
well under a second per 1000 images at 64 px, and stored as uint8 in a ``TensorSplit``.
"""
from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainables.data.base import DatasetSpec, Split, TensorSplit, register_dataset
from trainables.data._cache import cached_split

SHAPE_NAMES = ("circle", "square", "triangle", "cross", "ring", "diamond", "x", "frame")
MIN_SIDE_PX = 4.0  # smaller objects are enlarged to this side so every mask is non-empty
_PIXELS_PER_CHUNK = 1 << 22


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test on normalised coordinates u, v in [-1, 1] of the object's square (v points down)."""
    au, av = np.abs(u), np.abs(v)
    inside = np.maximum(au, av) <= 1
    if name == "circle":
        return u * u + v * v <= 1
    if name == "square":
        return inside
    if name == "triangle":
        return inside & (au <= (v + 1) / 2)
    if name == "cross":
        return inside & ((au <= 0.3) | (av <= 0.3))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.55**2)
    if name == "diamond":
        return au + av <= 1
    if name == "x":
        return inside & (np.abs(au - av) <= 0.3)
    if name == "frame":
        return inside & (np.maximum(au, av) >= 0.6)
    raise KeyError(name)


def hue_rgb(h: np.ndarray) -> np.ndarray:
    """Fully saturated colours [..., 3] in [0, 1] for hues ``h`` in [0, 1)."""
    h6 = 6 * np.asarray(h, dtype=np.float32)[..., None]
    return np.clip(np.stack([np.abs(h6[..., 0] - 3) - 1, 2 - np.abs(h6[..., 0] - 2),
                             2 - np.abs(h6[..., 0] - 4)], -1), 0, 1)


def tint_palette(num_classes: int) -> np.ndarray:
    """The spurious-cue tints as zero-mean chroma vectors [C, 3] (class k gets hue k / C)."""
    rgb = hue_rgb(np.arange(num_classes) / num_classes)
    return rgb - rgb.mean(-1, keepdims=True)


class ShapesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_classes: int = Field(4, ge=2, le=len(SHAPE_NAMES), description="the first C of " + ", ".join(SHAPE_NAMES))
    n_train: int = Field(1024, ge=1)
    n_test: int = Field(256, ge=1)
    min_size: float = Field(0.25, gt=0, le=1, description="smallest object side, fraction of the image side")
    max_size: float = Field(0.5, gt=0, le=1, description="largest object side, fraction of the image side")
    spurious_corr: float = Field(0.0, ge=0, le=1, description="P(background tint = class tint) in train; 0 = off")
    test_cue: bool = Field(False, description="draw the test split with the training cue too (in-distribution); "
                                              "default: without it (the bias test, e.g. as an evaluation.shift)")
    tint: float = Field(0.3, ge=0, le=1, description="strength of the background colour tint")
    noise: float = Field(0.03, ge=0, le=0.5, description="std of the per-pixel luminance noise")

    @model_validator(mode="after")
    def _range(self):
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must be <= max_size ({self.max_size})")
        return self


def _geometry(rng: np.random.Generator, n: int, side: int, p: ShapesParams):
    size = np.clip(rng.uniform(p.min_size, p.max_size, n) * side, min(MIN_SIDE_PX, side), side)
    cx = size / 2 + rng.random(n) * (side - size)
    cy = size / 2 + rng.random(n) * (side - size)
    return size, cx, cy


def _masks(labels: np.ndarray, size, cx, cy, side: int) -> np.ndarray:
    centres = np.arange(side, dtype=np.float32) + 0.5
    half = (size / 2)[:, None, None]
    u = (centres[None, None, :] - cx[:, None, None]) / half
    v = (centres[None, :, None] - cy[:, None, None]) / half
    masks = np.zeros((len(labels), side, side), dtype=bool)
    for k in np.unique(labels):
        idx = labels == k
        masks[idx] = _shape_mask(SHAPE_NAMES[k], u[idx], v[idx])
    return masks


def _texture(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    """Luminance texture [n, S, S]: stripes of random frequency/orientation plus a linear gradient.

    Both are separable in x and y (sin(a + b) = sin a cos b + cos a sin b), so only O(n S) trig calls.
    """
    t = (np.arange(side, dtype=np.float32) + 0.5) / side
    theta, theta2, phase = rng.uniform(0, np.pi, (3, n, 1)).astype(np.float32)
    k = (2 * np.pi * rng.uniform(2, 6, (n, 1))).astype(np.float32)
    amp = rng.uniform(0, 0.12, (n, 1, 1)).astype(np.float32)
    ax, by = k * np.cos(theta) * t, k * np.sin(theta) * t + 2 * phase  # [n, S]
    stripes = amp * (np.sin(ax)[:, None, :] * np.cos(by)[:, :, None] + np.cos(ax)[:, None, :] * np.sin(by)[:, :, None])
    slope = rng.uniform(-0.3, 0.3, (n, 1)).astype(np.float32) / np.sqrt(2)
    gx, gy = slope * np.cos(theta2) * t, slope * (np.sin(theta2) * t - 0.25 * np.sqrt(2))
    return stripes + gx[:, None, :] + gy[:, :, None]


def _tint_chroma(rng: np.random.Generator, labels: np.ndarray, p: ShapesParams, corr: float) -> np.ndarray:
    n = len(labels)
    if p.spurious_corr == 0:
        rgb = hue_rgb(rng.random(n))
        return rgb - rgb.mean(-1, keepdims=True)
    random_cls = rng.integers(0, p.num_classes, n)
    tint_cls = np.where(rng.random(n) < corr, labels, random_cls)
    return tint_palette(p.num_classes)[tint_cls]


def render(rng: np.random.Generator, n: int, side: int, p: ShapesParams, corr: float):
    """Draw ``n`` images: uint8 [n,3,S,S], int64 labels [n], float32 boxes [n,4], uint8 masks [n,S,S]."""
    labels = rng.integers(0, p.num_classes, n)
    size, cx, cy = _geometry(rng, n, side, p)
    masks = _masks(labels, size, cx, cy, side)
    dark_bg = rng.random(n) < 0.5
    grey = np.where(dark_bg, rng.uniform(0.1, 0.3, n), rng.uniform(0.6, 0.85, n))
    bg = grey[:, None] + p.tint * _tint_chroma(rng, labels, p, corr)
    fg = np.where(dark_bg[:, None], rng.uniform(0.65, 1.0, (n, 3)), rng.uniform(0.0, 0.3, (n, 3)))
    back = 255 * bg.astype(np.float32)[:, :, None, None] + 255 * _texture(rng, n, side)[:, None]
    img = np.where(masks[:, None], 255 * fg.astype(np.float32)[:, :, None, None], back)
    # luminance noise, uniform with std ``noise``: cheap to draw and leaves the tint's chroma untouched
    noise = rng.random((n, 1, side, side), dtype=np.float32)
    img += np.float32(255 * p.noise * 2 * np.sqrt(3)) * (noise - np.float32(0.5))
    images = np.clip(img, 0, 255, out=img).round(out=img).astype(np.uint8)
    return images, labels, mask_boxes(masks), masks


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Exact extent of each non-empty mask [n,H,W] as continuous (x1, y1, x2, y2) = (min, min, max+1, max+1)."""
    cols, rows = masks.any(1), masks.any(2)
    w, h = cols.shape[1], rows.shape[1]
    x1, y1 = cols.argmax(1), rows.argmax(1)
    x2, y2 = w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


@register_dataset("shapes")
class Shapes(DatasetSpec):
    Params = ShapesParams
    has_boxes = True
    has_masks = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._cache: dict[str, TensorSplit] = {}

    @property
    def num_classes(self) -> int:
        return self.params.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(SHAPE_NAMES[: self.num_classes])

    def load(self, split: Split) -> TensorSplit:
        if split not in self._cache:
            self._cache[split] = cached_split(self, split, self._generate)  # per-node disk cache (_cache.py)
        return self._cache[split]

    def _generate(self, split: Split) -> TensorSplit:
        p, side = self.params, self.cfg.image_size
        n = p.n_train if split == "train" else p.n_test
        corr = p.spurious_corr if split == "train" or p.test_cue else 0.0
        rng = np.random.default_rng([self.cfg.seed, 0 if split == "train" else 1])
        chunk = max(1, _PIXELS_PER_CHUNK // (side * side))
        parts = [render(rng, min(chunk, n - i), side, p, corr) for i in range(0, n, chunk)]
        images, labels, boxes, masks = (np.concatenate(x) for x in zip(*parts))
        return TensorSplit(torch.from_numpy(images), torch.from_numpy(labels).long(),
                           torch.from_numpy(boxes), torch.from_numpy(masks.astype(np.uint8)))
