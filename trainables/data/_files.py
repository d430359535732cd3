"""Shared pieces of the real on-disk loaders: one-line layout errors, image decoding, letterboxed splits.

Every problem with a dataset on disk becomes a ``DatasetError`` whose one-line message names the dataset,
the path and what was expected there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from trainables.data.base import make_sample
from trainables.data.transforms import letterbox
from trainables.errors import DatasetError


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def need(path: Path, name: str, layout: str, kind: str = "any") -> Path:
    """``path`` if it exists (as a file / dir when ``kind`` says so), else a one-line ``DatasetError``."""
    ok = path.is_file() if kind == "file" else path.is_dir() if kind == "dir" else path.exists()
    if not ok:
        what = {"file": "file", "dir": "directory"}.get(kind, "path")
        raise DatasetError(f"{name}: {path} not found ({what}); expected {layout}")
    return path


def table(path: Path, name: str, columns: str, comment: str = "#") -> list[tuple[int, list[str]]]:
    """Whitespace-separated lines of a text file as (line number, fields), checking the field count."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{name}: cannot read {path} ({one_line(e)})") from None
    n, rows = len(columns.split()), []
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.startswith(comment):
            continue
        fields = line.split()
        if len(fields) != n:
            raise DatasetError(f"{name}: {path} line {i}: expected '{columns}', got {line.strip()[:80]!r}")
        rows.append((i, fields))
    return rows


def number(text: str, path: Path, line: int, name: str, cast: type = int):
    try:
        return cast(text)
    except ValueError:
        raise DatasetError(f"{name}: {path} line {line}: expected a number, got {text!r}") from None


def read_image(path: Path, name: str, mode: str = "RGB") -> torch.Tensor:
    """Decode an image file with PIL to uint8 ``[C,H,W]``; ``mode`` "RGB" converts grey, palette and CMYK."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode))
    except Exception as e:  # PIL raises many types for truncated / unknown files
        raise DatasetError(f"{name}: cannot read image {path} ({one_line(e)})") from None
    return torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1)


@dataclass(frozen=True)
class Record:
    """One image on disk: its label, its box (continuous x1,y1,x2,y2 in the file's pixels) and mask file."""

    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    mask_path: Path | None = None


class FileSplit(torch.utils.data.Dataset):
    """Images read from disk per item, letterboxed to ``size`` with their boxes and masks.

    ``mask_fn`` turns a decoded single-channel mask image ``[H,W]`` uint8 into a 0/1 object mask.
    """

    def __init__(self, records: list[Record], size: int, name: str,
                 mask_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.records, self.size, self.name, self.mask_fn = records, size, name, mask_fn

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([r.label for r in self.records], dtype=torch.int64)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        image = read_image(r.path, self.name)
        mask = None
        if r.mask_path is not None and self.mask_fn is not None:
            mask = self.mask_fn(read_image(r.mask_path, self.name, "L")[0])
            if mask.shape != image.shape[-2:]:
                raise DatasetError(f"{self.name}: mask {r.mask_path} is {tuple(mask.shape)}, "
                                   f"image {r.path} is {tuple(image.shape[-2:])}; expected equal sizes")
        image, box, mask = letterbox(image, self.size, r.box, mask)
        return make_sample(image, r.label, box, mask)


class ArraySplit(torch.utils.data.Dataset):
    """In-memory uint8 images ``[N,C,h,w]`` at their native size, letterboxed to ``size`` per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int):
        self.images, self.labels, self.size = images, labels.long(), size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        image, _, _ = letterbox(self.images[i], self.size)
        return make_sample(image, int(self.labels[i]))
