"""Shared pieces of the real on-disk loaders: one-line layout errors, image decoding, letterboxed splits.

Every problem with a dataset on disk becomes a ``DatasetError`` whose one-line message names the dataset,
the path and what was expected there.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
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


# ---- corrupt files: found before training, never inside a DataLoader worker --------------------------
def decode_problem(path: Path, size: int) -> str | None:
    """Why the image at ``path`` cannot be decoded (missing, not an image, truncated), or None.

    JPEGs decode in draft mode (reduced DCT scale: cheap, yet every byte of the stream is read, so a
    truncated file still fails)."""
    try:
        with Image.open(path) as im:
            im.draft(im.mode, (size, size))
            im.load()
    except Exception as e:  # PIL raises many types for truncated / unknown files
        return one_line(e)
    return None


def _split_files(ds) -> tuple[FileSplit, list[int]] | None:
    if isinstance(ds, torch.utils.data.Subset) and isinstance(ds.dataset, FileSplit):
        return ds.dataset, list(ds.indices)
    if isinstance(ds, FileSplit):
        return ds, list(range(len(ds)))
    return None


def _problems(files: FileSplit, idx: list[int]) -> list[tuple[int, Path, str]]:
    def check(i: int):
        r = files.records[i]
        for path in (r.path, r.mask_path):
            if path is not None and (why := decode_problem(path, files.size)):
                return i, path, why
        return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        return [p for p in pool.map(check, idx) if p is not None]


def check_images(ds, skip_corrupt: bool):
    """Decode every image (and mask) a split uses, once, before training.

    Returns ``(split, skipped paths)``. An unreadable file is a one-line ``DatasetError`` naming it, or, with
    ``skip_corrupt``, a warning naming the files, which are left out of the split. Other splits pass through."""
    found = _split_files(ds)
    if found is None:
        return ds, []
    files, idx = found
    bad = _problems(files, idx)
    if not bad:
        return ds, []
    _, path, why = bad[0]
    more = f" (and {len(bad) - 1} more unreadable file(s))" if len(bad) > 1 else ""
    if not skip_corrupt:
        raise DatasetError(f"{files.name}: cannot read image {path} ({why}){more}; replace or remove it, "
                           f"or set dataset.skip_corrupt: true to train without unreadable files")
    drop = {i for i, _, _ in bad}
    keep = [i for i in idx if i not in drop]
    if not keep:
        raise DatasetError(f"{files.name}: all {len(idx)} images of the split are unreadable, e.g. {path} ({why})")
    warnings.warn(f"{files.name}: skipping {len(bad)} unreadable image(s) of {len(idx)}: "
                  + ", ".join(f"{p} ({w})" for _, p, w in bad[:5]) + (" ..." if len(bad) > 5 else ""),
                  stacklevel=2)
    return torch.utils.data.Subset(files, keep), [str(p) for _, p, _ in bad]
