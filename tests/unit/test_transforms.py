"""Letterbox: ALGORITHMS.md §1.5 values exactly; boxes and masks move with the pixels."""
import pytest
import torch

from trainables.data.transforms import letterbox


def test_letterbox_pets_values():
    """500x375 (WxH) -> scale 0.448, 224x168, centred pad y = 28; box (100,50,400,300) -> (44.8,50.4,179.2,162.4)."""
    img = torch.rand(3, 375, 500)
    out, box, _ = letterbox(img, 224, box=(100, 50, 400, 300))
    assert out.shape == (3, 224, 224)
    # hand-computed corners; abs 1e-4 covers float32 scale-and-pad rounding (ulp of 179.2 is 1.5e-5)
    assert box.tolist() == pytest.approx([44.8, 50.4, 179.2, 162.4], abs=1e-4)
    rows = out.abs().sum((0, 2)) > 0
    assert not rows[:28].any() and rows[28:196].all() and not rows[196:].any()  # 168 image rows, 28 pad each side


def test_portrait_pads_x_and_mask_follows_box():
    img = torch.zeros(3, 100, 50)
    mask = torch.zeros(100, 50, dtype=torch.uint8)
    mask[20:60, 10:30] = 1
    img[:, 20:60, 10:30] = 1.0
    out, box, m = letterbox(img, 64, box=(10, 20, 30, 60), mask=mask)
    # hand-computed corners, abs 1e-4 = float32 rounding of scale-and-pad (ulps ~4e-6 at 40 px) with margin
    assert box.tolist() == pytest.approx([16 + 6.4, 12.8, 16 + 19.2, 38.4], abs=1e-4)  # scale 0.64, pad x 16
    ys, xs = torch.nonzero(m, as_tuple=True)
    assert m.dtype == torch.uint8 and m.shape == (64, 64)
    assert abs(xs.min().item() - box[0]) <= 1 and abs(xs.max().item() + 1 - box[2]) <= 1
    assert abs(ys.min().item() - box[1]) <= 1 and abs(ys.max().item() + 1 - box[3]) <= 1


def test_square_and_fill_and_uint8():
    img = (torch.rand(1, 32, 32) * 255).to(torch.uint8)
    out, box, m = letterbox(img, 32)
    # same size: no resampling, only the uint8 -> [0, 1] conversion; allclose's defaults (rtol 1e-5, atol 1e-8)
    # allow a division-vs-reciprocal-multiply difference of an ulp or two
    assert torch.allclose(out, img.float() / 255) and box is None and m is None
    up, _, _ = letterbox(torch.ones(3, 10, 20), 40, fill=0.5)
    assert up.shape == (3, 40, 40) and up[:, 0].eq(0.5).all() and up[:, 20].eq(1).all()
