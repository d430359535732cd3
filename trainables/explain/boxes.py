"""CAM -> threshold -> OpenCV contours -> box (fgsm-at-gradcam-iou-pets; ALGORITHMS.md §1.1, §1.5).

``cam_boxes(cam, threshold, rule)``: binarise each [0,1] map at ``cam >= threshold``, find the external
contours (``cv2.findContours``, 8-connected foreground), take each contour's bounding rectangle and
return one box per image in **continuous** pixel coordinates ``(x1, y1, x2, y2)``, ``x2 - x1 = width``
(a pixel-inclusive box ``(c1, r1, c2, r2)`` becomes ``(c1, r1, c2 + 1, r2 + 1)``), the convention of the
datasets' boxes.

- ``rule="largest"``: the contour enclosing the most pixels (``contourArea + boundary points/2 + 1``,
  Pick's theorem on the pixel-centre polygon: the exact pixel count of a hole-free region, ALGORITHMS.md
  §1.5's "area"); ``"union"``: the box around all contours.
- Default threshold 0.5 (half of the map's maximum after min-max scaling): ALGORITHMS.md §1.1's R choice
  for the unspecified threshold of the Pets study; it keeps only the dominant mode of a smooth CAM, while
  lower values (Grad-CAM's WSOL used 0.15) give larger boxes. IoU depends strongly on it: report it with
  the number. ``threshold="otsu"`` picks it per image with Otsu's method.
- An image whose map has no pixel at or above the threshold (an all-zero CAM) gets a NaN box.

Contour finding is OpenCV's, so this one step runs on the CPU; the boxes return on ``cam``'s device.
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch

BoxRule = Literal["largest", "union"]


def binarize(cam: torch.Tensor, threshold: float | str = 0.5) -> torch.Tensor:
    """``[B,H,W]`` in [0,1] -> bool mask; ``threshold="otsu"`` uses Otsu's threshold per image."""
    if threshold == "otsu":
        u8 = (cam.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        masks = [cv2.threshold(m, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] for m in u8]
        return torch.from_numpy(np.stack(masks)).to(cam.device).bool()
    return cam >= float(threshold)


def contour_boxes(mask: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """External contours of a uint8 mask -> ``(x1, y1, x2, y2, pixels)`` continuous boxes."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        steps = len(c) if len(c) > 1 else 0  # boundary points of the closed chain (a lone pixel: none)
        pixels = cv2.contourArea(c) + steps / 2 + 1
        out.append((float(x), float(y), float(x + w), float(y + h), pixels))
    return out


def mask_box(mask: np.ndarray, rule: BoxRule = "largest") -> tuple[float, float, float, float]:
    boxes = contour_boxes(mask)
    if not boxes:
        return (float("nan"),) * 4
    if rule == "largest":
        return max(boxes, key=lambda b: b[4])[:4]
    if rule == "union":
        a = np.array(boxes)
        return (a[:, 0].min(), a[:, 1].min(), a[:, 2].max(), a[:, 3].max())
    raise ValueError(f"unknown box rule {rule!r}; valid: largest, union")


def cam_boxes(cam: torch.Tensor, threshold: float | str = 0.5, rule: BoxRule = "largest") -> torch.Tensor:
    """``cam: [B,H,W]`` in [0,1] -> boxes ``[B,4]`` (x1, y1, x2, y2), continuous coordinates."""
    masks = binarize(cam, threshold).to(torch.uint8).cpu().numpy()
    boxes = [mask_box(np.ascontiguousarray(m), rule) for m in masks]
    return torch.tensor(boxes, dtype=torch.float32, device=cam.device).reshape(-1, 4)
