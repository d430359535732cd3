"""ImageNet-C corruptions (Hendrycks & Dietterich 2019) as batched torch functions of ``[B, C, H, W]`` images in
[0, 1]: ``CORRUPTIONS.get(name)(x, severity, generator) -> x'``, the severity constants of the reference package
``imagecorruptions`` (``corruptions.py``), checked against it in ``tests/unit/test_corruptions.py``.

The 9 of its 15 common types that are defined at the embedded data's 16-64 px and computed on the device:

- exact equivalents (same image -> same result within 1/255 on the uint8 grid): ``defocus_blur`` (its disk
  kernel, OpenCV's reflect-101 border), ``zoom_blur`` (SciPy ``zoom(order=1)`` = bilinear, align-corners),
  ``brightness`` (HSV value + c: every RGB channel scales with V), ``contrast``, ``pixelate`` (Pillow's BOX
  down-, NEAREST up-sampling); ``jpeg_compression`` is Pillow's own JPEG codec per image on the CPU
  (the reference's call, bit-identical on uint8 images);
- random ones, same distribution (torch's generator is not NumPy's): ``gaussian_noise``, ``shot_noise``
  (Poisson), ``impulse_noise`` (salt & pepper per channel value, scikit-image's ``random_noise``).

Left out, with the reason: ``frost`` (crops of the package's bundled ~300-800 px frost photos: at 16-64 px a
crop is a flat patch, not the corruption); ``glass_blur`` (per-pixel Python shuffles; the reference calls
scikit-image's removed ``multichannel`` argument and fails on scikit-image >= 0.19); ``fog`` (its plasma
fractal uses NumPy's removed ``np.float_``; fails on NumPy 2); ``snow``, ``motion_blur``, ``elastic_transform``
(their kernels and displacement fields are sized for >= 224 px ImageNet images; not ported).
"""
from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from trainables.registry import Registry

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def _c(values, severity: int):
    if not 1 <= severity <= 5:
        raise ValueError(f"corruption severity must be 1..5, got {severity}")
    return values[severity - 1]


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x, severity, g):
    c = _c([.08, .12, .18, .26, .38], severity)
    return (x + c * torch.randn(x.shape, generator=g, device=x.device)).clamp(0, 1)


@CORRUPTIONS.register("shot_noise")
def shot_noise(x, severity, g):
    c = _c([60, 25, 12, 5, 3], severity)
    return (torch.poisson(x * c, generator=g) / c).clamp(0, 1)


@CORRUPTIONS.register("impulse_noise")
def impulse_noise(x, severity, g):
    c = _c([.03, .06, .09, .17, .27], severity)
    u = torch.rand(x.shape, generator=g, device=x.device)
    return torch.where(u < c / 2, 1.0, torch.where(u < c, 0.0, x))


def _disk(radius: int, alias_blur: float, device) -> torch.Tensor:
    """The reference's anti-aliased disk kernel: a normalised disk, then OpenCV's Gaussian blur (3 or 5 taps)."""
    r = max(radius, 8)
    L = torch.arange(-r, r + 1, dtype=torch.float64)
    d = ((L[None] ** 2 + L[:, None] ** 2) <= radius ** 2).double()
    d /= d.sum()
    k = 3 if radius <= 8 else 5
    t = torch.arange(k, dtype=torch.float64) - k // 2
    g1 = torch.exp(-t ** 2 / (2 * alias_blur ** 2))
    g1 /= g1.sum()
    d = F.pad(d[None, None], (k // 2,) * 4, mode="reflect")  # cv2 BORDER_REFLECT_101
    d = F.conv2d(F.conv2d(d, g1.view(1, 1, 1, k)), g1.view(1, 1, k, 1))[0, 0]
    return d.float().to(device)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``cv2.filter2D`` per channel: correlation, centred anchor, reflect-101 border."""
    C, p = x.shape[1], kernel.shape[-1] // 2
    xp = F.pad(x, (p,) * 4, mode="reflect")
    return F.conv2d(xp, kernel.expand(C, 1, *kernel.shape), groups=C)


@CORRUPTIONS.register("defocus_blur")
def defocus_blur(x, severity, g):
    radius, alias = _c([(3, .1), (4, .5), (6, .5), (8, .5), (10, .5)], severity)
    return _filter(x, _disk(radius, alias, x.device)).clamp(0, 1)


@CORRUPTIONS.register("zoom_blur")
def zoom_blur(x, severity, g):
    top, step = _c([(1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03)], severity)
    factors = np.arange(1, top, step).tolist()  # the reference's factors, float rounding included
    H, W = x.shape[-2:]
    out = torch.zeros_like(x)
    for z in factors:
        ch, cw = math.ceil(H / z), math.ceil(W / z)
        t, l = (H - ch) // 2, (W - cw) // 2
        crop = x[..., t:t + ch, l:l + cw]
        size = (round(ch * z), round(cw * z))  # scipy.ndimage.zoom's output shape (>= H, W)
        out += F.interpolate(crop, size=size, mode="bilinear", align_corners=True)[..., :H, :W]
    return ((x + out) / (len(factors) + 1)).clamp(0, 1)


@CORRUPTIONS.register("brightness")
def brightness(x, severity, g):
    """HSV value + c with hue and saturation kept: every channel scales by V'/V (grey at V = 0)."""
    c = _c([.1, .2, .3, .4, .5], severity)
    v = x.amax(1, keepdim=True)
    v2 = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * v2 / v.clamp_min(1e-12), v2).clamp(0, 1)


@CORRUPTIONS.register("contrast")
def contrast(x, severity, g):
    c = _c([.4, .3, .2, .1, .05], severity)
    m = x.mean((2, 3), keepdim=True)
    return ((x - m) * c + m).clamp(0, 1)


def _box_matrix(n_in: int, n_out: int, device) -> torch.Tensor:
    """Pillow's BOX resampling coefficients (``precompute_coeffs``) as an ``[n_out, n_in]`` matrix."""
    scale = n_in / n_out
    support, ss = 0.5 * max(scale, 1.0), 1.0 / max(scale, 1.0)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        centre = (o + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        for i in range(lo, hi):
            u = (i - centre + 0.5) * ss
            m[o, i] = 1.0 if -0.5 < u <= 0.5 else 0.0
        m[o] /= m[o].sum()
    return m.float().to(device)


def _nearest(n_in: int, n_out: int) -> torch.Tensor:
    """Pillow's NEAREST source indices (``ImagingScaleAffine``: the position accumulates ``+= n_in / n_out`` in
    floating point, so 0.2 + 7 x 0.4 lands just under 3 -> 2)."""
    a, pos, out = n_in / n_out, 0.5 * n_in / n_out, []
    for _ in range(n_out):
        out.append(min(int(pos), n_in - 1))
        pos += a
    return torch.tensor(out)


@CORRUPTIONS.register("pixelate")
def pixelate(x, severity, g):
    c = _c([.6, .5, .4, .3, .25], severity)
    H, W = x.shape[-2:]
    h, w = int(H * c), int(W * c)
    small = _box_matrix(H, h, x.device) @ x @ _box_matrix(W, w, x.device).T
    rows, cols = _nearest(h, H).to(x.device), _nearest(w, W).to(x.device)
    return small[..., rows[:, None], cols[None, :]]


@CORRUPTIONS.register("jpeg_compression")
def jpeg_compression(x, severity, g):
    """Pillow's JPEG encoder at the reference's quality, image by image on the CPU (no batched codec)."""
    from PIL import Image

    q = _c([25, 18, 15, 10, 7], severity)
    u8 = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for im in u8:
        pil = Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)
        buf = io.BytesIO()
        pil.convert("RGB").save(buf, "JPEG", quality=q)
        dec = Image.open(buf).convert(pil.mode)
        out.append(np.asarray(dec).reshape(im.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255
