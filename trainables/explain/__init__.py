"""Explanations as pure, batched tensor functions: CAM methods (a registry), input gradients, CAM boxes."""
from trainables.explain.base import CAM_METHODS, BaseCAM, CAMOutput, cam_kind_for, minmax, register_cam, upsample
from trainables.explain.boxes import binarize, cam_boxes
from trainables.explain.gradients import (
    ce_score,
    channel_map,
    integrated_gradients,
    logit_score,
    path_points,
    vanilla_gradient,
)

__all__ = ["CAM_METHODS", "BaseCAM", "CAMOutput", "cam_kind_for", "minmax", "register_cam", "upsample",
           "binarize", "cam_boxes", "ce_score", "channel_map", "integrated_gradients", "logit_score",
           "path_points", "vanilla_gradient", "compute_cam"]


def compute_cam(model, x, method: str = "gradcam", targets=None) -> CAMOutput:
    """``CAM_METHODS.get(method)()(model, x, targets)``: ``x: [B,C,H,W]`` in [0,1] -> ``[B,H,W]`` in [0,1]."""
    return CAM_METHODS.get(method)()(model, x, targets)
