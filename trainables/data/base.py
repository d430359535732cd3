"""Dataset registry and the sample contract shared by every dataset.

Every dataset split is a ``torch.utils.data.Dataset`` whose items are dicts:

- ``image``: float32 ``[C,H,W]`` in [0,1], square ``image_size`` (letterboxed for real data)
- ``label``: int64 scalar
- ``box``: float32 ``[4]`` = (x1, y1, x2, y2) in continuous pixel coordinates of the returned image
  (x2 - x1 = width); all NaN when the image has no box
- ``mask``: uint8 ``[H,W]`` object mask (all zeros when absent) and ``has_mask``: bool

so the default collate makes batches, and box/mask metrics skip items without them.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from trainables.registry import Registry

Split = Literal["train", "test"]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetSpec:
    """A registered dataset. Subclasses set ``Params`` and implement ``num_classes`` and ``load``."""

    Params: ClassVar[type[BaseModel]] = NoParams
    needs_root: ClassVar[bool] = False
    in_chans: ClassVar[int] = 3
    has_boxes: ClassVar[bool] = False
    has_masks: ClassVar[bool] = False
    cache_dir: str | None = None  # set by ``build_dataset``: the per-node split cache of generated data

    def __init__(self, cfg):
        """``cfg``: a ``trainables.config.DatasetConfig``."""
        self.cfg = cfg
        self.params = self.Params(**cfg.params)
        self.skipped: dict[str, list[str]] = {}  # split -> unreadable files left out (``skip_corrupt``)

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        return [str(i) for i in range(self.num_classes)]

    def load(self, split: Split) -> torch.utils.data.Dataset:
        raise NotImplementedError

    def split(self, split: Split) -> torch.utils.data.Dataset:
        """The split, capped at ``train_size`` / ``test_size`` (a seeded random subset); image files are
        decoded once first (an unreadable one: ``DatasetError`` naming it, or skipped with ``skip_corrupt``)."""
        ds = self.load(split)
        cap = self.cfg.train_size if split == "train" else self.cfg.test_size
        if cap is not None and cap < len(ds):
            g = torch.Generator().manual_seed(self.cfg.seed + (0 if split == "train" else 1))
            idx = torch.randperm(len(ds), generator=g)[:cap].sort().values.tolist()
            ds = torch.utils.data.Subset(ds, idx)
        from trainables.data._files import check_images

        ds, self.skipped[split] = check_images(ds, self.cfg.skip_corrupt)
        return ds


DATASETS: Registry[type[DatasetSpec]] = Registry("dataset", "trainables.data")
register_dataset = DATASETS.register


def build_dataset(cfg, cache_dir: str | None = None) -> DatasetSpec:
    """``cache_dir``: where generated (embedded) datasets cache their splits (``_cache.py``); None: no cache."""
    spec = DATASETS.get(cfg.name)(cfg)
    spec.cache_dir = cache_dir
    return spec


def make_sample(image: torch.Tensor, label: int, box=None, mask: torch.Tensor | None = None) -> dict:
    h, w = image.shape[-2:]
    return {
        "image": image,
        "label": torch.tensor(label, dtype=torch.int64),
        "box": torch.as_tensor(box, dtype=torch.float32) if box is not None else torch.full((4,), float("nan")),
        "mask": mask.to(torch.uint8) if mask is not None else torch.zeros(h, w, dtype=torch.uint8),
        "has_mask": torch.tensor(mask is not None),
    }


class TensorSplit(torch.utils.data.Dataset):
    """An in-memory split: uint8 images [N,C,H,W], labels, boxes [N,4] (NaN = none), masks [N,H,W] or None."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor | None = None,
                 masks: torch.Tensor | None = None):
        self.images, self.labels, self.boxes, self.masks = images, labels, boxes, masks

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        box = self.boxes[i] if self.boxes is not None else None
        if box is not None and torch.isnan(box).any():
            box = None
        mask = self.masks[i] if self.masks is not None else None
        return make_sample(self.images[i].float() / 255.0, int(self.labels[i]), box, mask)
