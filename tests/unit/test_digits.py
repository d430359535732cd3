"""``digits``: sklearn glyphs on sklearn photo crops; exact boxes = mask extent, 10 classes, seeded."""
import numpy as np
import torch

from trainables.config import DatasetConfig
from trainables.data import build_dataset
from trainables.data.digits import glyph_pools


def _data(seed=0, size=64, **params):
    params = {"n_train": 200, "n_test": 100, **params}
    return build_dataset(DatasetConfig(name="digits", seed=seed, image_size=size, params=params))


def test_contract_and_classes():
    data = _data()
    train = data.split("train")
    s = train[0]
    assert s["image"].shape == (3, 64, 64) and 0 <= s["image"].min() and s["image"].max() <= 1
    assert data.num_classes == 10 and data.has_boxes and data.has_masks
    assert set(train.labels.tolist()) == set(range(10))
    assert len(train) == 200 and len(data.split("test")) == 100


def test_box_equals_mask_extent_and_size_range():
    side, lo, hi = 48, 0.4, 0.5
    split = _data(seed=1, size=side, min_size=lo, max_size=hi).split("train")
    for box, m in zip(split.boxes, split.masks.bool()):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert len(xs) > 0
        assert torch.equal(box, torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32))
    extent = torch.maximum(split.boxes[:, 2] - split.boxes[:, 0], split.boxes[:, 3] - split.boxes[:, 1])
    assert extent.max() <= hi * side + 1 and extent.min() >= 0.2 * side  # a glyph fills most of its square


def test_ink_contrasts_with_the_background():
    split = _data().split("train")
    img, m = split.images.float() / 255, split.masks.bool()[:, None].expand(-1, 3, -1, -1)
    ink = (img * m).sum((1, 2, 3)) / m.sum((1, 2, 3))
    ring = ~m  # everything else
    bg = (img * ring).sum((1, 2, 3)) / ring.sum((1, 2, 3))
    assert ((ink - bg).abs() > 0.1).float().mean() > 0.9


def test_deterministic_by_seed_and_test_glyphs_held_out():
    a, b, c = _data(seed=4).split("train"), _data(seed=4).split("train"), _data(seed=5).split("train")
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.images, c.images)
    train_pool, test_pool = glyph_pools(4)
    assert len(train_pool) == 1437 and len(test_pool) == 360 and not set(train_pool) & set(test_pool)
    assert not np.array_equal(glyph_pools(5)[1], test_pool)
