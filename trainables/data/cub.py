"""``cub``: Caltech-UCSD Birds-200-2011 (Wah et al. 2011) from ``CUB_200_2011/`` under ``dataset.root``.

``root`` is ``CUB_200_2011/`` or its parent, holding ``images.txt`` ("ID PATH"), ``image_class_labels.txt``
("ID CLASS_ID", 1..200), ``train_test_split.txt`` ("ID IS_TRAIN"), ``bounding_boxes.txt`` ("ID X Y W H",
pixels), ``classes.txt`` ("CLASS_ID NAME") and ``images/<PATH>``. Boxes are (x, y, x + w, y + h).
"""
from __future__ import annotations

from pathlib import Path

from trainables.data._files import FileSplit, Record, need, number, table
from trainables.data.base import DatasetSpec, Split, register_dataset
from trainables.errors import DatasetError

LAYOUT = ("the CUB_200_2011 layout (images.txt, image_class_labels.txt, train_test_split.txt, "
          "bounding_boxes.txt, classes.txt, images/)")


def cub_dir(root: Path, name: str = "cub") -> Path:
    root = need(Path(root), name, LAYOUT, "dir")
    sub = root / "CUB_200_2011"
    return sub if sub.is_dir() else root


def id_table(path: Path, columns: str, name: str = "cub", cast: type = int) -> dict[int, list]:
    """``{ID: [values...]}`` of a CUB text file whose first column is the image / class id."""
    rows = table(need(path, name, LAYOUT, "file"), name, columns)
    out = {}
    for line, (i, *rest) in rows:
        out[number(i, path, line, name)] = [v if cast is str else number(v, path, line, name, cast) for v in rest]
    return out


def cub_boxes(cub: Path, name: str = "cub") -> dict[str, tuple[float, float, float, float]]:
    """``{image path relative to images/: (x1, y1, x2, y2)}`` from images.txt and bounding_boxes.txt."""
    paths = id_table(cub / "images.txt", "ID PATH", name, str)
    boxes = id_table(cub / "bounding_boxes.txt", "ID X Y W H", name, float)
    return {p: (x, y, x + w, y + h) for i, (p,) in paths.items() if i in boxes for x, y, w, h in [boxes[i]]}


@register_dataset("cub")
class CUB(DatasetSpec):
    needs_root = True
    has_boxes = True

    @property
    def num_classes(self) -> int:
        return 200

    @property
    def class_names(self) -> list[str]:
        names = id_table(cub_dir(self.cfg.root) / "classes.txt", "CLASS_ID NAME", cast=str)
        return [names[i + 1][0].split(".", 1)[-1] if i + 1 in names else str(i) for i in range(200)]

    def load(self, split: Split) -> FileSplit:
        cub = cub_dir(self.cfg.root)
        paths = id_table(cub / "images.txt", "ID PATH", cast=str)
        labels = id_table(cub / "image_class_labels.txt", "ID CLASS_ID")
        is_train = id_table(cub / "train_test_split.txt", "ID IS_TRAIN")
        boxes = cub_boxes(cub)
        images = need(cub / "images", "cub", LAYOUT, "dir")
        want = 1 if split == "train" else 0
        records = []
        for i, (rel,) in paths.items():
            if i not in labels or i not in is_train:
                raise DatasetError(f"cub: image id {i} of {cub / 'images.txt'} is missing from "
                                   f"image_class_labels.txt or train_test_split.txt; expected every id in each")
            if is_train[i][0] != want:
                continue
            if not 1 <= labels[i][0] <= 200:
                raise DatasetError(f"cub: {cub / 'image_class_labels.txt'}: class {labels[i][0]} of image {i} "
                                   "is outside 1..200")
            path = need(images / rel, "cub", f"images/{rel} (listed in images.txt)", "file")
            records.append(Record(path, labels[i][0] - 1, boxes.get(rel)))
        if not records:
            raise DatasetError(f"cub: no {split} images in {cub / 'train_test_split.txt'}; expected {LAYOUT}")
        return FileSplit(records, self.cfg.image_size, "cub")
