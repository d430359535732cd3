"""``arx bench explain``: our batched Grad-CAM vs pytorch-grad-cam's ``GradCAM`` on the same model, layer
and batch (target: ≤ 0.8× its time), the box-IoU pipeline's throughput (CAM -> threshold -> contours ->
box -> IoU) and ``evaluation/rung``: a rung evaluation of the default sweep's objectives on 64 images relative
to one of its training epochs (``_rung.py``; goal ≤ 0.10×).

Both Grad-CAMs run resnet18 (random init, eval mode) at 64 px, batch 64, on the predicted class, with the
target layer ``Classifier.target_layer`` (``layer4``); CUDA when available. The two maps are checked to
agree before timing.
"""
from __future__ import annotations

import importlib.util

import torch

from analysis.bench import register_bench
from analysis.bench._rung import rung_row
from analysis.bench.timing import median_seconds
from trainables.explain import cam_boxes, compute_cam
from trainables.metrics.localization import box_iou
from trainables.models import build_classifier


def _setup(batch: int, size: int, device: torch.device):
    torch.manual_seed(0)
    model = build_classifier("resnet18", num_classes=10).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    return model, x


def _peer(model, x):
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        return None
    from pytorch_grad_cam import GradCAM

    cam = GradCAM(model, [model.target_layer])
    ours = compute_cam(model, x).cam.cpu()
    peer = torch.from_numpy(cam(x, None))
    if not torch.allclose(ours, peer, atol=1e-3):
        raise AssertionError("bench explain: our Grad-CAM disagrees with pytorch-grad-cam's")
    return lambda: cam(x, None)


@register_bench("explain")
def run(quick: bool = False) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, size, repeats = (16, 64, 3) if quick else (64, 64, 20 if device.type == "cuda" else 5)
    model, x = _setup(batch, size, device)
    common = {"device": device.type, "model": "resnet18", "batch": batch, "size": size}

    ours_s = median_seconds(lambda: compute_cam(model, x).cam.sum().item(), repeats, warmup=3)
    peer_fn = _peer(model, x)
    peer_s = median_seconds(peer_fn, repeats, warmup=3) if peer_fn else None
    rows = [{"bench": "gradcam_batch", "ours_s": ours_s, "peer_s": peer_s,
             "ratio": ours_s / peer_s if peer_s else None, "target": "<= 0.8 (pytorch-grad-cam GradCAM)", **common}]

    gt = torch.tensor([[8.0, 8.0, 48.0, 40.0]], device=device).expand(batch, 4)

    def pipeline():
        return box_iou(cam_boxes(compute_cam(model, x).cam, 0.5, "largest"), gt).sum().item()

    pipe_s = median_seconds(pipeline, repeats, warmup=2)
    rows.append({"bench": "box_iou_pipeline", "ours_s": pipe_s, "peer_s": None, "ratio": None,
                 "target": "images/s (report)", "images_per_s": batch / pipe_s, **common})
    rows.append(rung_row(quick))
    return rows
