"""Localisation metrics of class-activation maps: box IoU, mask IoU, pointing game, CAM L1, random baseline.

Pure, batched tensor functions. Boxes are ``[B,4]`` = (x1, y1, x2, y2) in continuous pixel coordinates
(``x2 - x1`` = width; ``inclusive=True`` switches to the pixel-inclusive ``+1`` convention of
ALGORITHMS.md §1.5's second IoU column); CAMs are ``[B,H,W]`` in [0,1]; masks ``[B,H,W]`` (non-zero = object).
"""
from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor, inclusive: bool = False) -> torch.Tensor:
    one = 1.0 if inclusive else 0.0
    return (boxes[:, 2] - boxes[:, 0] + one).clamp(min=0) * (boxes[:, 3] - boxes[:, 1] + one).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor, inclusive: bool = False) -> torch.Tensor:
    """Row-wise IoU of boxes ``a`` and ``b`` ``[B,4]`` -> ``[B]`` (NaN where a box is NaN)."""
    one = 1.0 if inclusive else 0.0
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]) + one).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1]) + one).clamp(min=0)
    inter = w * h
    iou = inter / (box_area(a, inclusive) + box_area(b, inclusive) - inter)
    nan = torch.isnan(a).any(1) | torch.isnan(b).any(1)
    return torch.where(nan, torch.full_like(iou, float("nan")), iou)


def mask_iou(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IoU of a binarised CAM ``pred`` (e.g. ``explain.binarize(cam, 0.5)``) and the object ``mask``,
    both ``[B,H,W]`` (non-zero = inside) -> ``[B]`` (NaN if both are empty)."""
    pred, gt = pred != 0, mask != 0
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    return inter / union


def pointing_game(cam: torch.Tensor, boxes: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """1 if the centre of the CAM's maximal pixel lies within ``tolerance`` pixels of the box, else 0.

    Zhang et al. 2016 use the mask with a 15-px tolerance; here the box (NaN box -> NaN). A constant CAM
    (e.g. all zero) has no maximal pixel: a miss, consistent with its box IoU of 0.
    """
    b, h, w = cam.shape
    flat = cam.flatten(1)
    idx = flat.argmax(1)
    cy = (idx // w).to(boxes.dtype) + 0.5
    cx = (idx % w).to(boxes.dtype) + 0.5
    dx = (boxes[:, 0] - cx).clamp(min=0) + (cx - boxes[:, 2]).clamp(min=0)
    dy = (boxes[:, 1] - cy).clamp(min=0) + (cy - boxes[:, 3]).clamp(min=0)
    hit = ((dx.square() + dy.square()).sqrt() <= tolerance) & (flat.max(1).values > flat.min(1).values)
    return torch.where(torch.isnan(boxes).any(1), torch.full_like(cx, float("nan")), hit.to(cx.dtype))


def cam_l1(cam: torch.Tensor) -> torch.Tensor:
    """CAM sparsity (Top-GAP §4): ``(1/nm) Σ |X|`` of the min-max-scaled CAM ``[B,H,W]`` -> ``[B]``."""
    return cam.abs().flatten(1).mean(1)


def random_boxes(n: int, height: int, width: int, generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
    """``n`` boxes with both x corners and both y corners uniform in the image (sorted) -> ``[n,4]``."""
    u = torch.rand(n, 4, generator=generator, device=device)
    xs = (u[:, :2] * width).sort(1).values
    ys = (u[:, 2:] * height).sort(1).values
    return torch.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1)


def random_box_iou(gt: torch.Tensor, height: int, width: int, samples: int = 100,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Random-box baseline: expected IoU of ``samples`` uniform random boxes with each GT box ``[B,4]``.

    The chance level ``explain/box_iou`` must beat: a localiser that ignores the image. ``[B]``, NaN
    where the GT box is NaN.
    """
    rand = random_boxes(len(gt) * samples, height, width, generator, gt.device).to(gt.dtype)
    iou = box_iou(gt.repeat_interleave(samples, 0), rand)
    return iou.view(len(gt), samples).mean(1)
