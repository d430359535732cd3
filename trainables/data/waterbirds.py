"""``waterbirds``: Waterbirds (Sagawa et al. 2020; CUB birds pasted on Places backgrounds), a bias benchmark.

``root`` is ``waterbird_complete95_forest2water2/``: ``metadata.csv`` with columns
``img_id,img_filename,y,split,place,place_filename`` (``y``: 0 landbird, 1 waterbird; ``split``: 0 train,
1 val, 2 test; ``place``: 0 land, 1 water background) and the images at ``root/<img_filename>``. The test
split is ``params.test_split`` (test by default). Boxes come from a CUB_200_2011 directory
(``params.cub_root``): the generation script keeps each CUB image's size and position, so CUB's
``bounding_boxes.txt`` applies as is. The background label of every item is ``split.places``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from trainables.data._files import FileSplit, Record, need, one_line
from trainables.data.base import DatasetSpec, Split, register_dataset
from trainables.data.cub import cub_boxes, cub_dir
from trainables.errors import DatasetError

LAYOUT = "the waterbird_complete95_forest2water2 layout (metadata.csv and the image folders)"
COLUMNS = ("img_id", "img_filename", "y", "split", "place")
SPLITS = {"train": 0, "val": 1, "test": 2}


class WaterbirdsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, protected_namespaces=())

    cub_root: Path | None = None
    test_split: Literal["val", "test"] = "test"
    target: Literal["waterbird", "species"] = "waterbird"  # species: CUB's 200 classes (img_filename NNN.Name/)


def read_metadata(path: Path) -> list[dict]:
    need(path, "waterbirds", LAYOUT, "file")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"waterbirds: cannot read {path} ({one_line(e)})") from None
    missing = [c for c in COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise DatasetError(f"waterbirds: {path} lacks column(s) {', '.join(missing)}; expected a header "
                           f"{','.join(COLUMNS)},place_filename")
    for i, row in enumerate(rows, 2):
        try:
            row["y"], row["split"], row["place"] = int(row["y"]), int(row["split"]), int(row["place"])
        except (TypeError, ValueError):
            raise DatasetError(f"waterbirds: {path} line {i}: y, split and place must be integers") from None
        if row["y"] not in (0, 1) or row["split"] not in (0, 1, 2) or row["place"] not in (0, 1):
            raise DatasetError(f"waterbirds: {path} line {i}: expected y in 0/1, split in 0/1/2, place in 0/1")
    return rows


def _species(img_filename: str) -> int:
    """CUB's 0-based class of a Waterbirds image from its folder ``NNN.Name/``."""
    try:
        return int(img_filename.split("/")[0].split(".")[0]) - 1
    except ValueError:
        raise DatasetError(f"waterbirds: img_filename {img_filename!r} does not start with CUB's NNN.Name/ folder "
                           f"(needed by params.target: species)") from None


class WaterbirdsSplit(FileSplit):
    """A ``FileSplit`` that also knows each image's background (0 land, 1 water) for group metrics."""

    def __init__(self, records, size, places: list[int]):
        super().__init__(records, size, "waterbirds")
        self.places = torch.tensor(places, dtype=torch.int64)


@register_dataset("waterbirds")
class Waterbirds(DatasetSpec):
    Params = WaterbirdsParams
    needs_root = True
    has_boxes = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.has_boxes = self.params.cub_root is not None

    @property
    def num_classes(self) -> int:
        return 200 if self.params.target == "species" else 2

    @property
    def class_names(self) -> list[str]:
        if self.params.target == "species":  # CUB's names, from the image folders (001.Black_footed_Albatross)
            rows = read_metadata(Path(self.cfg.root) / "metadata.csv")
            names = {_species(r["img_filename"]): r["img_filename"].split("/")[0].split(".", 1)[-1] for r in rows}
            return [names.get(i, str(i)) for i in range(200)]
        return ["landbird", "waterbird"]

    def load(self, split: Split) -> WaterbirdsSplit:
        root = need(Path(self.cfg.root), "waterbirds", LAYOUT, "dir")
        rows = read_metadata(root / "metadata.csv")
        boxes = cub_boxes(cub_dir(self.params.cub_root, "waterbirds"), "waterbirds") if self.params.cub_root else {}
        want = SPLITS["train" if split == "train" else self.params.test_split]
        records, places = [], []
        for row in rows:
            if row["split"] != want:
                continue
            path = need(root / row["img_filename"], "waterbirds", "an image listed in metadata.csv", "file")
            label = _species(row["img_filename"]) if self.params.target == "species" else row["y"]
            records.append(Record(path, label, boxes.get(row["img_filename"])))
            places.append(row["place"])
        if not records:
            raise DatasetError(f"waterbirds: {root / 'metadata.csv'} has no rows with split {want}; expected {LAYOUT}")
        return WaterbirdsSplit(records, self.cfg.image_size, places)
