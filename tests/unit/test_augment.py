"""#18.1: training augmentation presets (trainables/data/augment.py)."""
import pytest
import torch

from trainables.config import DatasetConfig, TrialConfig
from trainables.data.augment import augment, augment_batch, preset_for


def _asymmetric(n=64, size=16):
    """A batch whose left half is bright and right half dark: a flip is visible exactly."""
    x = torch.zeros(n, 3, size, size)
    x[..., : size // 2] = 1.0
    x[..., 0, 0, 0] = 0.5  # and no vertical symmetry either
    return x


def test_flip_mirrors_the_image_exactly_about_half_the_time():
    x = _asymmetric()
    out = augment(x, "flip", seed=0, epoch=0, step=0)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped | same).all()) and 16 <= int(flipped.sum()) <= 48  # p = 0.5 of 64: 5+ sigma bounds


def test_cifar_crop_is_a_shift_of_at_most_4_px_with_zero_fill():
    size = 16
    x = torch.rand(32, 3, size, size) + 0.1  # no zeros in the image itself
    out = augment(x, "cifar", seed=1, epoch=0, step=0)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for o, p in zip(out, padded):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if torch.allclose(o, p[:, dy:dy + size, dx:dx + size]) or
                torch.allclose(o, p[:, dy:dy + size, dx:dx + size].flip(-1))]
        assert hits, "every output is a 16x16 window of the 4-px zero-padded image (or its mirror)"


def test_imagenet_crop_keeps_the_size_and_the_value_range():
    x = torch.rand(8, 3, 32, 32)
    out = augment(x, "imagenet", seed=0, epoch=0, step=0)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, x)


@pytest.mark.parametrize("preset", ["flip", "cifar", "imagenet"])
def test_deterministic_for_a_seed_and_different_across_epochs(preset):
    x = torch.rand(16, 3, 16, 16)
    rng = torch.get_rng_state()
    a = augment(x, preset, seed=3, epoch=1, step=2)
    assert torch.equal(a, augment(x, preset, seed=3, epoch=1, step=2))
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left as it was
    assert not torch.equal(a, augment(x, preset, seed=3, epoch=2, step=2))
    assert not torch.equal(a, augment(x, preset, seed=4, epoch=1, step=2))
    assert not torch.equal(a, augment(x, preset, seed=3, epoch=1, step=2, rank=1))  # each rank its own stream


def test_defaults_per_dataset_and_the_training_hook():
    assert preset_for(DatasetConfig(name="shapes")) == "none"
    assert preset_for(DatasetConfig(name="digits")) == "none"
    assert preset_for(DatasetConfig(name="cifar10", root="/x")) == "cifar"
    assert preset_for(DatasetConfig(name="pets", root="/x")) == "imagenet"
    assert preset_for(DatasetConfig(name="pets", root="/x", augment="none")) == "none"
    x = _asymmetric(8)
    assert augment_batch(x, TrialConfig(), 0, 0) is x  # shapes: none
    cfg = TrialConfig(dataset={"name": "shapes", "augment": "flip"})
    assert torch.equal(augment_batch(x, cfg, 0, 0), augment(x, "flip", cfg.seed, 0, 0))
    with pytest.raises(ValueError):
        DatasetConfig(name="shapes", augment="autoaugment")
