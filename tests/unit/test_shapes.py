"""``shapes``: exact boxes = mask extent, determinism by seed, object size range, spurious background cue."""
import time

import numpy as np
import pytest
import torch

from trainables.config import DatasetConfig, TrialConfig
from trainables.data import build_dataset
from trainables.data.shapes import SHAPE_NAMES, tint_palette
from trainables.errors import ConfigError


def _data(seed=0, size=64, **params):
    params = {"n_train": 256, "n_test": 128, **params}
    return build_dataset(DatasetConfig(seed=seed, image_size=size, params=params))


def _batch(split):
    return next(iter(torch.utils.data.DataLoader(split, batch_size=len(split))))


def test_sample_contract():
    data = _data()
    s = data.split("train")[0]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["label"].dtype == torch.int64 and s["mask"].shape == (64, 64) and bool(s["has_mask"])
    assert data.num_classes == 4 and data.class_names == list(SHAPE_NAMES[:4])
    assert data.has_boxes and data.has_masks and data.in_chans == 3


@pytest.mark.parametrize("num_classes,size", [(4, 64), (8, 48), (2, 32)])
def test_box_equals_mask_extent_for_every_sample(num_classes, size):
    b = _batch(_data(seed=3, size=size, num_classes=num_classes).split("train"))
    masks = b["mask"].bool()
    assert masks.flatten(1).any(1).all(), "every object has a non-empty mask"
    for box, m in zip(b["box"], masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        expected = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.equal(box, expected)
    assert set(b["label"].tolist()) == set(range(num_classes))


def test_deterministic_by_seed_and_seeds_differ():
    a, b, c = _data(seed=7).split("train"), _data(seed=7).split("train"), _data(seed=8).split("train")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images[:128], _data(seed=7).split("test").images)


def test_object_size_range_is_respected():
    side, lo, hi = 64, 0.2, 0.3
    boxes = _data(size=side, min_size=lo, max_size=hi).split("train").boxes
    extent = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert extent.max() <= hi * side + 1 and extent.min() >= lo * side - 2
    big = _data(size=side, min_size=0.7, max_size=0.8).split("train").boxes
    assert (big[:, 2] - big[:, 0]).mean() > 2 * (boxes[:, 2] - boxes[:, 0]).mean()
    assert (boxes >= 0).all() and (boxes <= side).all()


def _tint_agreement(split, num_classes):
    """Fraction of images whose background chroma is nearest the palette tint of their own class."""
    img = split.images.float() / 255
    bg = (1 - split.masks.float())[:, None]
    mean = (img * bg).sum((2, 3)) / bg.sum((2, 3))
    chroma = (mean - mean.mean(1, keepdim=True)).numpy()
    pal = tint_palette(num_classes)
    cos = chroma @ pal.T / (np.linalg.norm(chroma, axis=1, keepdims=True) * np.linalg.norm(pal, axis=1) + 1e-9)
    return float((cos.argmax(1) == split.labels.numpy()).mean())


def test_spurious_background_correlates_with_class_in_train_only():
    data = _data(num_classes=4, n_train=512, n_test=512, spurious_corr=0.9)
    train, test = _tint_agreement(data.split("train"), 4), _tint_agreement(data.split("test"), 4)
    assert train > 0.85  # expected 0.9 + 0.1 / 4
    assert abs(test - 0.25) < 0.08  # chance
    off = _data(num_classes=4, n_train=512).split("train")
    assert abs(_tint_agreement(off, 4) - 0.25) < 0.08


def test_split_caps_and_params_are_validated():
    cfg = DatasetConfig(train_size=100, params={"n_train": 300})
    assert len(build_dataset(cfg).split("train")) == 100
    with pytest.raises(ConfigError, match="dataset.params.*min_size"):
        TrialConfig.parse({"dataset": {"params": {"min_size": 0.6, "max_size": 0.5}}})
    with pytest.raises(ConfigError, match="dataset.params.num_classes"):
        TrialConfig.parse({"dataset": {"params": {"num_classes": 9}}})


def test_fast_enough():
    data = _data(n_train=1000)
    t0 = time.process_time()  # CPU time: robust to a busy machine
    data.split("train")
    assert time.process_time() - t0 < 2.0  # ~0.4 s
