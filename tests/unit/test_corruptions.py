"""Each batched corruption against the reference package ``imagecorruptions`` on the same images.

Deterministic types: the same uint8 image gives the same uint8 result within 1 grey level (the reference
truncates ``np.uint8(float)``; Pillow's BOX resize rounds its intermediate rows to uint8). Random types
(torch's generator is not NumPy's): the residuals ``corrupted - clean`` of ours and the reference's, pooled over
the test images, come from the same distribution (two-sample Kolmogorov-Smirnov p > 1e-3 at each severity),
while the neighbouring severity's residuals are rejected (p < 1e-6): the comparison can fail.
"""
from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from trainables.evaluation._corruptions import CORRUPTIONS

EXACT = ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"]
RANDOM = ["gaussian_noise", "shot_noise", "impulse_noise"]


def reference():
    """``imagecorruptions.corrupt``. The package imports ``pkg_resources`` (gone from setuptools >= 81) only for
    its frost images, which arx does not use: a stand-in module lets it import; the stand-in is the one piece
    of this test that depends on the package's internals, and the import fails loudly if they change."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pkg_resources")
        stub.resource_filename = lambda pkg, name: name
        sys.modules["pkg_resources"] = stub
    return importlib.import_module("imagecorruptions").corrupt


def images() -> list[np.ndarray]:
    rs = np.random.RandomState(0)
    yy, xx = np.mgrid[:32, :32]
    smooth = np.stack([(yy * 8) % 256, (xx * 8) % 256, ((xx + yy) * 4) % 256], -1)
    dark = (rs.rand(32, 32, 3) * 40).astype(np.uint8)  # brightness's V = 0 / low-V branch
    dark[:4, :4] = 0
    return [(rs.rand(32, 32, 3) * 255).astype(np.uint8), (rs.rand(40, 48, 3) * 255).astype(np.uint8),
            smooth.astype(np.uint8), dark]


def ours(name: str, im: np.ndarray, severity: int, g: torch.Generator | None = None) -> np.ndarray:
    x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
    y = CORRUPTIONS.get(name)(x, severity, g or torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    return np.floor(y[0].permute(1, 2, 0).double().numpy() * 255 + 1e-3)  # the reference's uint8 truncation


@pytest.mark.parametrize("name", EXACT)
def test_deterministic_types_match_the_reference(name):
    corrupt = reference()
    for severity in range(1, 6):
        for im in images():
            want = corrupt(im, severity, name).astype(float)
            got = ours(name, im, severity)
            assert np.abs(got - want).max() <= 1, (name, severity, im.shape, np.abs(got - want).max())
            assert np.abs(got - im).max() > 1  # the corruption changes the image


def _residuals(fn, severity: int) -> np.ndarray:
    """``corrupted - clean`` over 16 random 48 px images (110,592 values: KS resolves impulse's 3 % vs 6 %)."""
    rs = np.random.RandomState(1)
    ims = [(rs.rand(48, 48, 3) * 255).astype(np.uint8) for _ in range(16)]
    return np.concatenate([(fn(im, severity) - im.astype(float)).ravel() for im in ims])


@pytest.mark.parametrize("name", RANDOM)
def test_random_types_match_the_reference_distribution(name):
    corrupt = reference()
    np.random.seed(0)
    for severity in range(1, 6):
        ref = _residuals(lambda im, s: corrupt(im, s, name).astype(float), severity)
        g = torch.Generator().manual_seed(severity)  # one stream over the images (a seed per image repeats it)
        got = _residuals(lambda im, s: ours(name, im, s, g), severity)
        assert ks_2samp(ref, got).pvalue > 1e-3, (name, severity)
        if severity < 5:
            other = _residuals(lambda im, s: ours(name, im, s, g), severity + 1)
            assert ks_2samp(ref, other).pvalue < 1e-6, (name, severity)


def test_random_types_are_reproducible_from_the_generator():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for name in RANDOM:
        a, b, c = (CORRUPTIONS.get(name)(x, 1, torch.Generator().manual_seed(s)) for s in (5, 5, 6))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_hand_computed_values():
    x = torch.tensor([0.2, 0.5, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    # brightness 1: V 0.5 -> 0.6, every channel scales by 1.2 (hue, saturation kept)
    assert torch.allclose(CORRUPTIONS.get("brightness")(x, 1, None)[0, :, 0, 0], torch.tensor([0.24, 0.6, 0.0]))
    assert torch.allclose(CORRUPTIONS.get("brightness")(torch.zeros(1, 3, 2, 2), 2, None), torch.full((1, 3, 2, 2), .2))
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    assert torch.allclose(CORRUPTIONS.get("contrast")(y, 1, None), torch.tensor([[.3, .7], [.3, .7]]).view(1, 1, 2, 2))


def test_tiny_images_and_grey_channels_work():
    """The embedded data's smallest size (16 px, below the reference's 32 px floor) and 1-channel images."""
    g = torch.Generator().manual_seed(0)
    for C in (1, 3):
        x = torch.rand(2, C, 16, 16, generator=g)
        for name in CORRUPTIONS.names():
            for severity in (1, 5):
                y = CORRUPTIONS.get(name)(x, severity, g)
                assert y.shape == x.shape and torch.isfinite(y).all(), (name, C, severity)


def test_bad_severity_is_one_line():
    with pytest.raises(ValueError, match="severity must be 1..5"):
        CORRUPTIONS.get("contrast")(torch.rand(1, 3, 16, 16), 6, None)
