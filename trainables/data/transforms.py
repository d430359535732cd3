"""Letterbox: resize keeping the aspect ratio, then pad to a centred square, moving boxes and masks along.

Built from ``torchvision.transforms.v2`` on ``tv_tensors`` (``Resize(size=None, max_size=S)`` scales the
longer side to S; ``PadToSquare(S)`` then pads the shorter side symmetrically), so boxes
(``BoundingBoxes``, XYXY, continuous pixel coordinates) and masks (``Mask``, nearest) move exactly with the
pixels. ALGORITHMS.md §1.5: a 500x375 image -> scale 0.448, 224x168, pad y = 28; box (100,50,400,300) ->
(44.8, 50.4, 179.2, 162.4).
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def letterbox_transform(size: int, fill: float = 0.0) -> v2.Transform:
    """The v2 pipeline: image of any size -> [C,size,size]; boxes and masks follow the pixels."""
    return v2.Compose([v2.Resize(size=None, max_size=size, antialias=True), PadToSquare(size, fill)])


class PadToSquare(v2.Transform):
    """Centred padding to ``size`` x ``size`` (left/top get the floor of half the gap) with ``fill``.

    The same placement as ``v2.CenterCrop`` when it pads, but with a chosen fill for images.
    """

    def __init__(self, size: int, fill: float):
        super().__init__()
        self.size, self.fill = size, fill

    def make_params(self, flat_inputs):
        h, w = v2.query_size(flat_inputs)
        left, top = (self.size - w) // 2, (self.size - h) // 2
        return {"padding": [left, top, self.size - w - left, self.size - h - top]}

    def transform(self, inpt, params):
        fill = 0 if isinstance(inpt, (tv_tensors.Mask, tv_tensors.BoundingBoxes)) else self.fill
        return self._call_kernel(v2.functional.pad, inpt, padding=params["padding"], fill=fill)


def letterbox(image: torch.Tensor, size: int, box=None, mask: torch.Tensor | None = None, fill: float = 0.0):
    """Letterbox one image.

    image: ``[C,H,W]`` float in [0,1] (or uint8, converted); box: (x1,y1,x2,y2) in continuous pixel
    coordinates or None; mask: ``[H,W]`` or None. Returns ``(image [C,S,S] float32, box [4] float32 or
    None, mask [S,S] uint8 or None)``.
    """
    if image.dtype == torch.uint8:
        image = image.float() / 255
    h, w = image.shape[-2:]
    inputs = {"image": tv_tensors.Image(image)}
    if box is not None:
        inputs["box"] = tv_tensors.BoundingBoxes(torch.as_tensor(box, dtype=torch.float32).reshape(1, 4),
                                                 format="XYXY", canvas_size=(h, w))
    if mask is not None:
        inputs["mask"] = tv_tensors.Mask(mask.to(torch.uint8))
    if (h, w) != (size, size):
        inputs = letterbox_transform(size, fill)(inputs)
    return (inputs["image"].as_subclass(torch.Tensor).clamp_(0, 1),
            inputs["box"].as_subclass(torch.Tensor)[0] if box is not None else None,
            inputs["mask"].as_subclass(torch.Tensor) if mask is not None else None)
