"""``imagenette``: Imagenette (fast.ai's 10 easy ImageNet classes) from ``imagenette2[-160|-320]/``.

``root`` holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (``val`` is the test split); classes are
the 10 wnids below, in this order. Images are read per item, converted to RGB (a few are greyscale) and
letterboxed. No boxes.
"""
from __future__ import annotations

from pathlib import Path

from trainables.data._files import FileSplit, Record, need
from trainables.data.base import DatasetSpec, Split, register_dataset
from trainables.errors import DatasetError

LAYOUT = "the imagenette2 layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)"
WNIDS = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball", "n03888605": "parachute",
}
EXTENSIONS = {".jpeg", ".jpg", ".png"}


@register_dataset("imagenette")
class Imagenette(DatasetSpec):
    needs_root = True

    @property
    def num_classes(self) -> int:
        return len(WNIDS)

    @property
    def class_names(self) -> list[str]:
        return list(WNIDS.values())

    def load(self, split: Split) -> FileSplit:
        root = need(Path(self.cfg.root), "imagenette", LAYOUT, "dir")
        folder = need(root / ("train" if split == "train" else "val"), "imagenette", LAYOUT, "dir")
        index = {w: i for i, w in enumerate(WNIDS)}
        records = []
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            if d.name not in index:
                raise DatasetError(f"imagenette: unexpected class folder {d}; expected one of the 10 wnids "
                                   f"({', '.join(WNIDS)})")
            records += [Record(f, index[d.name]) for f in sorted(d.iterdir()) if f.suffix.lower() in EXTENSIONS]
        if not records:
            raise DatasetError(f"imagenette: no images under {folder}; expected {LAYOUT}")
        return FileSplit(records, self.cfg.image_size, "imagenette")
