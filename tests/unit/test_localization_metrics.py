"""Localisation metrics against hand values (ALGORITHMS.md §1.5, §2.5) and limiting cases."""
import math

import pytest
import torch

from trainables.explain import minmax
from trainables.metrics.localization import (
    box_iou,
    cam_l1,
    mask_iou,
    pointing_game,
    random_box_iou,
    random_boxes,
)

IOU_TABLE = [  # A, B, continuous, inclusive (+1)   — ALGORITHMS.md §1.5
    ((0, 0, 10, 10), (5, 5, 15, 15), 0.142857, 0.174757),
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0, 1.0),
    ((0, 0, 10, 10), (10, 10, 20, 20), 0.0, 0.004149),
    ((20, 30, 120, 150), (40, 50, 140, 160), 0.533333, 0.536424),
]


def test_box_iou_table_continuous_and_inclusive():
    a = torch.tensor([r[0] for r in IOU_TABLE], dtype=torch.float64)
    b = torch.tensor([r[1] for r in IOU_TABLE], dtype=torch.float64)
    cont = torch.tensor([r[2] for r in IOU_TABLE], dtype=torch.float64)
    incl = torch.tensor([r[3] for r in IOU_TABLE], dtype=torch.float64)
    # float64 IoUs against the table's values printed to 6 decimals: atol 1e-6 is their precision
    torch.testing.assert_close(box_iou(a, b), cont, atol=1e-6, rtol=0)
    torch.testing.assert_close(box_iou(a, b, inclusive=True), incl, atol=1e-6, rtol=0)
    assert box_iou(a[:1], b[:1]).item() == pytest.approx(25 / 175, abs=1e-15)  # exact fraction
    torch.testing.assert_close(box_iou(b, a), box_iou(a, b))  # symmetric (the same float64 ops: defaults)


def test_box_iou_disjoint_and_nan():
    a = torch.tensor([[0.0, 0, 5, 5], [float("nan")] * 4])
    b = torch.tensor([[6.0, 6, 9, 9], [0.0, 0, 5, 5]])
    out = box_iou(a, b)
    assert out[0] == 0 and torch.isnan(out[1])


def test_mask_iou_hand_values():
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    gt = torch.zeros(2, 4, 4, dtype=torch.uint8)
    pred[0, :2, :2] = True   # 4 px
    gt[0, :2, :3] = 1        # 6 px, overlap 4
    out = mask_iou(pred, gt)
    assert out[0].item() == pytest.approx(4 / 6)  # one division of pixel counts: approx's rel 1e-6
    assert torch.isnan(out[1])  # both empty: undefined


def test_pointing_game():
    cam = torch.zeros(3, 8, 8)
    cam[:, 2, 3] = 1.0  # maximum at row 2, col 3 -> centre (3.5, 2.5)
    boxes = torch.tensor([[3.0, 2.0, 4.0, 3.0], [5.0, 5.0, 8.0, 8.0], [float("nan")] * 4])
    out = pointing_game(cam, boxes)
    assert out[0] == 1 and out[1] == 0 and torch.isnan(out[2])
    # distance from (3.5, 2.5) to the box corner (5, 5) is sqrt(1.5² + 2.5²) = 2.915
    assert pointing_game(cam[1:2], boxes[1:2], tolerance=2.9)[0] == 0
    assert pointing_game(cam[1:2], boxes[1:2], tolerance=2.92)[0] == 1


def test_pointing_game_on_a_constant_cam_is_a_miss():
    # an all-zero CAM has no maximum: a miss (its box IoU is 0 too), even for a box over pixel (0, 0),
    # where argmax would land; NaN boxes stay NaN
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 2.0, 2.0], [float("nan")] * 4])
    for value in (0.0, 0.5):
        out = pointing_game(torch.full((3, 8, 8), value), boxes, tolerance=3.0)
        assert out[:2].tolist() == [0.0, 0.0] and torch.isnan(out[2])


def test_cam_l1_top_gap_values():
    # ALGORITHMS.md §2.5: min-max CAMs of the two toy class maps and their ℓ1 sparsity
    x = torch.tensor([[[1, -2, 3], [0.5, 4, -1], [2, 0, 6]],
                      [[-1, 0, 1], [2, -3, 0.5], [0, 1.5, -0.5]]], dtype=torch.float64)
    cams = minmax(x, eps=0.0)
    torch.testing.assert_close(cams[0], torch.tensor([[.375, 0, .625], [.3125, .75, .125], [.5, .25, 1]],
                                                     dtype=torch.float64))
    # exact binary fractions (float64 defaults) and the ℓ1 mean 0.611111 printed to 6 decimals (atol 1e-6)
    torch.testing.assert_close(cam_l1(cams), torch.tensor([0.4375, 0.611111], dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_random_boxes_valid():
    boxes = random_boxes(1000, 32, 48, torch.Generator().manual_seed(0))
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= 48
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= 32


def test_random_box_baseline_closed_form():
    # IoU of a random box with the whole image = its area fraction; E|u1 - u2| = 1/3 per axis -> 1/9
    gt = torch.tensor([[0.0, 0.0, 64.0, 64.0], [float("nan")] * 4])
    out = random_box_iou(gt, 64, 64, samples=200_000, generator=torch.Generator().manual_seed(0))
    # statistical: IoU = product of two |u1 - u2| (sd ~0.124), 200k samples -> standard error 2.8e-4;
    # 2e-3 is ~7 standard errors (fixed generator seed, so not flaky either)
    assert out[0].item() == pytest.approx(1 / 9, abs=2e-3)
    assert math.isnan(out[1].item())
