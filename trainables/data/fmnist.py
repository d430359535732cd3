"""``fmnist``: Fashion-MNIST (Xiao et al. 2017) from its raw idx files under ``dataset.root``.

``root`` (or ``root/FashionMNIST/raw``, torchvision's layout) holds ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
gzipped (``.gz``). idx format: big-endian magic ``0x0000 08 NDIM`` (0x08 = uint8), NDIM big-endian int32
sizes, then the data. One channel (``in_chans = 1``), 28 px native, kept in memory. No boxes.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from trainables.data._files import ArraySplit, need, one_line
from trainables.data.base import DatasetSpec, Split, register_dataset
from trainables.errors import DatasetError

LAYOUT = ("the Fashion-MNIST idx layout (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
          "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz)")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A uint8 idx array with ``ndim`` dimensions (gzip detected from the file's magic bytes)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"fmnist: cannot read {path} ({one_line(e)})") from None
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DatasetError(f"fmnist: {path} is not a uint8 idx file with {ndim} dimension(s) "
                           f"(expected magic 00 00 08 {ndim:02x}, got {raw[:4].hex(' ') or 'an empty file'})")
    shape = tuple(int(x) for x in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"fmnist: {path} declares shape {shape} but holds {body.size} values")
    return body.reshape(shape)


@register_dataset("fmnist")
class FashionMNIST(DatasetSpec):
    needs_root = True
    in_chans = 1

    def __init__(self, cfg):
        super().__init__(cfg)
        self._cache: dict[str, ArraySplit] = {}

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def class_names(self) -> list[str]:
        return list(CLASSES)

    def _file(self, stem: str) -> Path:
        root = need(Path(self.cfg.root), "fmnist", LAYOUT, "dir")
        for d in (root, root / "FashionMNIST" / "raw"):
            for p in (d / stem, d / f"{stem}.gz"):
                if p.is_file():
                    return p
        raise DatasetError(f"fmnist: {root / stem}(.gz) not found; expected {LAYOUT}")

    def load(self, split: Split) -> ArraySplit:
        if split not in self._cache:
            prefix = "train" if split == "train" else "t10k"
            img_path, lab_path = self._file(f"{prefix}-images-idx3-ubyte"), self._file(f"{prefix}-labels-idx1-ubyte")
            images, labels = read_idx(img_path, 3), read_idx(lab_path, 1)
            if len(images) != len(labels) or labels.max(initial=0) > 9:
                raise DatasetError(f"fmnist: {img_path} has {len(images)} images but {lab_path} has "
                                   f"{len(labels)} labels (or labels outside 0..9); expected matching files")
            self._cache[split] = ArraySplit(torch.from_numpy(images.copy())[:, None],
                                            torch.from_numpy(labels.astype(np.int64)), self.cfg.image_size)
        return self._cache[split]
