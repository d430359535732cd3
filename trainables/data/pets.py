"""``pets``: Oxford-IIIT Pet (Parkhi et al. 2012) from its standard layout under ``dataset.root``.

::

    root/images/<Name>_<n>.jpg
    root/annotations/list.txt                "Abyssinian_100 1 1 1": NAME CLASS_ID(1..37) SPECIES(1 cat,2 dog) BREED_ID
    root/annotations/trainval.txt, test.txt  the same columns: the train / test splits
    root/annotations/xmls/<Name>_<n>.xml     Pascal VOC boxes (head boxes); images without one have no box
    root/annotations/trimaps/<Name>_<n>.png  optional: 1 pet, 2 background, 3 border

Labels: the 37 breeds (``params.target = "breed"``) or cat/dog (``"species"``). VOC boxes are 1-based
inclusive pixel indices, so the continuous box is (xmin - 1, ymin - 1, xmax, ymax). Masks (trimap != 2,
i.e. pet and its border) are used when the trimap exists and ``params.masks`` is on.

``params.boxes: whole`` reads the enriched release instead (its parquet files under ``root/data/``), whose
boxes cover the whole pet: see ``trainables/data/pets_enriched.py`` for the layout and the box convention.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from trainables.data._files import FileSplit, Record, need, number, one_line, table
from trainables.data.base import DatasetSpec, Split, register_dataset
from trainables.errors import DatasetError

LAYOUT = "the Oxford-IIIT Pet layout (images/, annotations/list.txt, trainval.txt, test.txt, xmls/)"
COLUMNS = "NAME CLASS_ID SPECIES BREED_ID"


class PetsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    target: Literal["breed", "species"] = "breed"
    masks: bool = True
    boxes: Literal["head", "whole"] = "head"  # whole: the enriched release's YOLOv8 boxes (pets_enriched.py)
    bbox_format: Literal["xyxy", "xywh"] = "xyxy"  # of label_bbox_enriched's bbox (boxes: whole)


def voc_box(path: Path) -> tuple[float, float, float, float]:
    """The first object's box of a Pascal VOC XML file, as continuous (x1, y1, x2, y2)."""
    try:
        bb = ET.parse(path).getroot().find("object/bndbox")
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (ET.ParseError, AttributeError, TypeError, ValueError, OSError) as e:
        raise DatasetError(f"pets: {path} is not a Pascal VOC annotation with object/bndbox "
                           f"xmin ymin xmax ymax ({one_line(e)})") from None
    if not (x2 >= x1 and y2 >= y1):
        raise DatasetError(f"pets: {path}: bndbox ({x1}, {y1}, {x2}, {y2}) has xmax < xmin or ymax < ymin")
    return max(x1 - 1, 0.0), max(y1 - 1, 0.0), x2, y2


def _mask_fn(trimap):
    return (trimap != 2).to(trimap.dtype)


@register_dataset("pets")
class Pets(DatasetSpec):
    Params = PetsParams
    needs_root = True
    has_boxes = True
    has_masks = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.unboxed: dict[str, int] = {}  # split -> images without a whole-pet box (boxes: whole)

    @property
    def num_classes(self) -> int:
        return 37 if self.params.target == "breed" else 2

    @property
    def class_names(self) -> list[str]:
        if self.params.target == "species":
            return ["cat", "dog"]
        if self.params.boxes == "whole":
            from trainables.data.pets_enriched import BREEDS

            return list(BREEDS)
        names = {int(cid): name.rsplit("_", 1)[0] for _, (name, cid, _, _) in self._rows("list.txt")}
        return [names.get(i + 1, str(i)) for i in range(37)]

    def _rows(self, file: str) -> list[tuple[int, list[str]]]:
        root = need(Path(self.cfg.root), "pets", LAYOUT, "dir")
        return table(need(root / "annotations" / file, "pets", LAYOUT, "file"), "pets", COLUMNS)

    def load(self, split: Split) -> FileSplit:
        root = Path(self.cfg.root)
        if self.params.boxes == "whole":
            from trainables.data.pets_enriched import load_enriched

            ds = load_enriched(root, split, self.cfg.image_size, self.params.target, self.params.bbox_format)
            self.unboxed[split] = ds.unboxed
            return ds
        self._rows("list.txt")  # the layout check: list.txt must be there and well formed
        file = "trainval.txt" if split == "train" else "test.txt"
        images = need(root / "images", "pets", LAYOUT, "dir")
        records = [self._record(root, images, line, fields, file) for line, fields in self._rows(file)]
        if not records:
            raise DatasetError(f"pets: {root / 'annotations' / file} lists no images; expected lines '{COLUMNS}'")
        return FileSplit(records, self.cfg.image_size, "pets", _mask_fn)

    def _record(self, root: Path, images: Path, line: int, fields: list[str], file: str) -> Record:
        name, cid, species, _ = fields
        path = root / "annotations" / file
        cid, species = number(cid, path, line, "pets"), number(species, path, line, "pets")
        if not (1 <= cid <= 37 and species in (1, 2)):
            raise DatasetError(f"pets: {path} line {line}: expected CLASS_ID in 1..37 and SPECIES in 1..2")
        image = images / f"{name}.jpg"
        if not image.is_file():
            raise DatasetError(f"pets: {image} not found (listed in {path} line {line}); expected images/{name}.jpg")
        xml = root / "annotations" / "xmls" / f"{name}.xml"
        trimap = root / "annotations" / "trimaps" / f"{name}.png"
        return Record(image, cid - 1 if self.params.target == "breed" else species - 1,
                      voc_box(xml) if xml.is_file() else None,
                      trimap if self.params.masks and trimap.is_file() else None)
