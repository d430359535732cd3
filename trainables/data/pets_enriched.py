"""``pets`` with ``params.boxes: whole``: the enriched release ``visual-layer/oxford-iiit-pet-vl-enriched``.

On-disk form (the Hugging Face dataset repository as downloaded, e.g. by ``cluster/fetch_pets.py --enriched``)::

    root/data/train-*.parquet, root/data/test-*.parquet   (3,680 / 3,669 rows)

Columns read: ``image`` (struct ``{bytes, path}``: the encoded JPEG), ``label_breed`` (the breed name, e.g.
``"Abyssinian"`` or ``"american_bulldog"``, or its 0-based index in ``BREEDS``) and ``label_bbox_enriched``
(a list of ``{bbox, confidence, label}`` made by the vendor's YOLOv8 model; null or empty when none).

Ground truth (ALGORITHMS §1.1, §1.6): the highest-confidence box whose ``label`` is ``cat`` or ``dog``; an image
without one has no box (excluded from box metrics; counted in the ``arx.dataset.unboxed`` tag). Coordinate
convention: ``bbox`` is absolute pixels of the stored image, ``params.bbox_format: xyxy`` (default,
``[x1, y1, x2, y2]``) or ``xywh`` (``[x, y, width, height]``), read as continuous coordinates (x2 - x1 =
width), clipped to the image; the image and box are then letterboxed together like every loader.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainables.data._files import one_line
from trainables.data.base import make_sample
from trainables.data.transforms import letterbox
from trainables.errors import DatasetError

LAYOUT = ("the enriched Oxford-IIIT Pet release (data/train-*.parquet, data/test-*.parquet with columns "
          "image, label_breed, label_bbox_enriched)")
# the 37 breeds in Oxford CLASS_ID order (list.txt); capitalised names are cats
BREEDS = ("Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman Bombay boxer "
          "British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel english_setter german_shorthaired "
          "great_pyrenees havanese japanese_chin keeshond leonberger Maine_Coon miniature_pinscher newfoundland "
          "Persian pomeranian pug Ragdoll Russian_Blue saint_bernard samoyed scottish_terrier shiba_inu "
          "Siamese Sphynx staffordshire_bull_terrier wheaten_terrier yorkshire_terrier").split()
_INDEX = {b.lower(): i for i, b in enumerate(BREEDS)}
COLUMNS = ("image", "label_breed", "label_bbox_enriched")


def breed_index(value, where: str) -> int:
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(BREEDS):
        return int(value)
    key = str(value).strip().lower().replace(" ", "_")
    if key not in _INDEX:
        raise DatasetError(f"pets: {where}: label_breed {value!r} is not one of the 37 Oxford-IIIT Pet breeds")
    return _INDEX[key]


def is_cat(breed: int) -> bool:
    return BREEDS[breed][0].isupper()


def whole_box(entries, width: int, height: int, fmt: str = "xyxy"):
    """The highest-confidence cat/dog box of ``label_bbox_enriched`` as continuous (x1, y1, x2, y2), or None."""
    best = None
    for e in entries or ():
        if str(e.get("label", "")).lower() not in ("cat", "dog") or e.get("bbox") is None:
            continue
        if best is None or float(e.get("confidence") or 0.0) > float(best.get("confidence") or 0.0):
            best = e
    if best is None:
        return None
    a, b, c, d = (float(v) for v in best["bbox"])
    x1, y1, x2, y2 = (a, b, a + c, b + d) if fmt == "xywh" else (a, b, c, d)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def parquet_files(root: Path, split: str) -> list[Path]:
    name = "train" if split == "train" else "test"
    files = sorted((root / "data").glob(f"{name}-*.parquet"))
    if not files:
        raise DatasetError(f"pets: no {root / 'data' / name}-*.parquet; expected {LAYOUT}")
    return files


def read_rows(files: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for f in files:
        try:
            table = pq.read_table(f, columns=list(COLUMNS))
        except Exception as e:  # pyarrow raises ArrowInvalid, KeyError-like errors for missing columns
            raise DatasetError(f"pets: cannot read {f} ({one_line(e)}); expected {LAYOUT}") from None
        rows += [dict(r, _file=str(f)) for r in table.to_pylist()]
    return rows


class EnrichedSplit(torch.utils.data.Dataset):
    """Rows of the enriched parquet: JPEG bytes decoded per item, letterboxed with their whole-pet box."""

    def __init__(self, rows: list[dict], size: int, target: str, fmt: str):
        self.size, self.fmt = size, fmt
        self.data = [(r["image"]["bytes"] if isinstance(r["image"], dict) else r["image"],
                      breed_index(r["label_breed"], r["_file"]), r["label_bbox_enriched"]) for r in rows]
        self.target = target

    def __len__(self) -> int:
        return len(self.data)

    def label(self, i: int) -> int:
        breed = self.data[i][1]
        return breed if self.target == "breed" else int(not is_cat(breed))

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([self.label(i) for i in range(len(self))], dtype=torch.int64)

    def image(self, i: int) -> torch.Tensor:
        try:
            with Image.open(io.BytesIO(self.data[i][0])) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:
            raise DatasetError(f"pets: row {i} of the enriched parquet: cannot decode its image ({one_line(e)})") \
                from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def box(self, i: int, width: int, height: int):
        return whole_box(self.data[i][2], width, height, self.fmt)

    @property
    def unboxed(self) -> int:
        """Images without a cat/dog box (sizes are not needed: a box is never dropped by clipping alone)."""
        return sum(whole_box(e, float("inf"), float("inf"), self.fmt) is None for _, _, e in self.data)

    def __getitem__(self, i: int) -> dict:
        image = self.image(i)
        h, w = image.shape[-2:]
        image, box, _ = letterbox(image, self.size, self.box(i, w, h))
        return make_sample(image, self.label(i), box)


def load_enriched(root: Path, split: str, size: int, target: str, fmt: str) -> EnrichedSplit:
    return EnrichedSplit(read_rows(parquet_files(root, split)), size, target, fmt)
