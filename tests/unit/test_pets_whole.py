"""#18.2: pets ``params.boxes: whole`` on a fixture in the enriched release's parquet form."""
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from trainables.config import DatasetConfig
from trainables.data import build_dataset
from trainables.data.check import check_dataset
from trainables.data.pets_enriched import whole_box
from trainables.errors import DatasetError


def _jpeg(w, h, seed):
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


ROWS = [  # (w, h, breed, enriched boxes)
    (80, 40, "Abyssinian", []),  # no box
    (40, 80, "american_bulldog", [{"bbox": [4.0, 10.0, 36.0, 70.0], "confidence": 0.9, "label": "dog"}]),
    (80, 40, "Siamese", [{"bbox": [0.0, 0.0, 20.0, 20.0], "confidence": 0.4, "label": "cat"},
                         {"bbox": [10.0, 5.0, 70.0, 35.0], "confidence": 0.8, "label": "cat"},
                         {"bbox": [0.0, 0.0, 80.0, 40.0], "confidence": 0.99, "label": "person"}]),
    (40, 40, "pug", None),  # a null list: no box
]


def _write(root, split="test"):
    (root / "data").mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "image": [{"bytes": _jpeg(w, h, i), "path": f"{i}.jpg"} for i, (w, h, _, _) in enumerate(ROWS)],
        "label_breed": [b for _, _, b, _ in ROWS],
        "label_bbox_enriched": [e for _, _, _, e in ROWS],
        "caption_enriched": ["x"] * len(ROWS),  # other columns of the release are ignored
    })
    pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")


def _cfg(root, **params):
    return DatasetConfig(name="pets", root=root, image_size=40, params={"boxes": "whole", **params})


def test_whole_boxes_after_letterboxing(tmp_path):
    _write(tmp_path)
    spec = build_dataset(_cfg(tmp_path))
    ds = spec.load("test")
    assert len(ds) == 4 and spec.unboxed["test"] == 2
    s = [ds[i] for i in range(4)]
    assert all(x["image"].shape == (3, 40, 40) for x in s)
    assert torch.isnan(s[0]["box"]).all() and torch.isnan(s[3]["box"]).all()
    # 40x80 -> scale 0.5 -> 20x40, padded left by 10: (4,10,36,70) -> (12, 5, 28, 35)
    assert torch.allclose(s[1]["box"], torch.tensor([12.0, 5.0, 28.0, 35.0]))
    # 80x40 -> 40x20, padded top by 10; the highest-confidence cat box (10,5,70,35), not the person box
    assert torch.allclose(s[2]["box"], torch.tensor([5.0, 12.5, 35.0, 27.5]))
    assert [int(x["label"]) for x in s] == [0, 1, 32, 25]
    assert spec.class_names[32] == "Siamese"


def test_species_target_and_xywh(tmp_path):
    _write(tmp_path)
    ds = build_dataset(_cfg(tmp_path, target="species", bbox_format="xywh")).load("test")
    assert [int(ds[i]["label"]) for i in range(4)] == [0, 1, 0, 1]  # cat, dog, cat, dog
    # xywh (4,10,36,70) -> (4,10,40,80) -> letterboxed (12,5,30,40)
    assert torch.allclose(ds[1]["box"], torch.tensor([12.0, 5.0, 30.0, 40.0]))


def test_box_choice_and_clipping():
    assert whole_box([{"bbox": [-5, -5, 50, 50], "confidence": 0.5, "label": "dog"}], 40, 30) == (0, 0, 40, 30)
    assert whole_box([{"bbox": [1, 1, 5, 5], "confidence": 0.9, "label": "person"}], 40, 30) is None
    assert whole_box([], 40, 30) is None and whole_box(None, 40, 30) is None


def test_wrong_layout_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match=r"data/test-\*\.parquet; expected the enriched Oxford-IIIT Pet release"):
        check_dataset(_cfg(tmp_path))
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"image": [b"x"]}), tmp_path / "data" / "test-0.parquet")
    with pytest.raises(DatasetError, match="cannot read .*test-0.parquet"):
        check_dataset(_cfg(tmp_path))
