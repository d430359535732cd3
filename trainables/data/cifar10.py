"""``cifar10``: CIFAR-10 (Krizhevsky 2009) from the python pickles under ``dataset.root``.

``root`` is ``cifar-10-batches-py/`` or its parent: ``data_batch_1`` ... ``data_batch_5`` (train),
``test_batch`` (test) and ``batches.meta`` (class names); each batch is a pickled dict with ``data``
(uint8 ``[N, 3072]``, channel-major 32x32) and ``labels``. Images are 32 px native and kept in memory;
other ``image_size`` values resize them per item. No boxes.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from trainables.data._files import ArraySplit, need, one_line
from trainables.data.base import DatasetSpec, Split, register_dataset
from trainables.errors import DatasetError

LAYOUT = "the CIFAR-10 python layout (cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta)"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def _unpickle(path: Path) -> dict:
    need(path, "cifar10", LAYOUT, "file")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:
        raise DatasetError(f"cifar10: {path} is not a readable CIFAR-10 pickle ({one_line(e)})") from None
    if not isinstance(d, dict):
        raise DatasetError(f"cifar10: {path} holds a {type(d).__name__}; expected a pickled dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N,3,32,32]`` and int64 labels ``[N]`` of one pickled batch."""
    d = _unpickle(path)
    try:
        data = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (KeyError, ValueError) as e:
        raise DatasetError(f"cifar10: {path}: expected keys 'data' (uint8 N x 3072) and 'labels' "
                           f"({one_line(e)})") from None
    if len(labels) != len(data) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DatasetError(f"cifar10: {path}: {len(data)} images but {len(labels)} labels, or labels outside 0..9")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


@register_dataset("cifar10")
class Cifar10(DatasetSpec):
    needs_root = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._cache: dict[str, ArraySplit] = {}

    @property
    def num_classes(self) -> int:
        return 10

    def _dir(self) -> Path:
        root = need(Path(self.cfg.root), "cifar10", LAYOUT, "dir")
        sub = root / "cifar-10-batches-py"
        return sub if sub.is_dir() else root

    @property
    def class_names(self) -> list[str]:
        names = _unpickle(self._dir() / "batches.meta").get("label_names", [])
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def load(self, split: Split) -> ArraySplit:
        if split not in self._cache:
            files = TRAIN_FILES if split == "train" else ["test_batch"]
            parts = [read_batch(self._dir() / f) for f in files]
            images, labels = (torch.cat(x) for x in zip(*parts))
            self._cache[split] = ArraySplit(images, labels, self.cfg.image_size)
        return self._cache[split]
