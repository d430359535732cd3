"""CAMs, gradients and boxes: peer equality (pytorch-grad-cam), hand values (ALGORITHMS.md §1.5, §4.7),
exact boxes on synthetic CAMs, and the ``explain`` evaluation group's families."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data import TensorSplit
from trainables.evaluation import EvalContext, evaluate
from trainables.explain import CAM_METHODS, cam_boxes, compute_cam, integrated_gradients, minmax, vanilla_gradient
from trainables.explain.boxes import contour_boxes
from trainables.explain.gradcam import GradCAM
from trainables.metrics.keys import KEYS, keys_of_group
from trainables.models import build_classifier
from trainables.regimes import build_regime


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ---- Grad-CAM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["resnet18", "densenet121", "mobilenetv2_100", "smallcnn"])
def test_gradcam_equals_pytorch_grad_cam(backbone):
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build_classifier(backbone, num_classes=5).eval()
    x = torch.rand(3, 3, 64, 64)
    compared = 0
    for targets in (None, torch.tensor([1, 4, 0])):  # predicted class, given class
        ours = compute_cam(model, x, "gradcam", targets)
        peer = PeerGradCAM(model, [model.target_layer])(x, [ClassifierOutputTarget(int(t)) for t in ours.targets])
        assert ours.cam.shape == (3, 64, 64)
        # both run the same float32 forward / backward on one machine (same activations and ReLU masks, so
        # no kink can differ between them); atol 1e-3 on maps in [0, 1] covers the post-processing the two
        # implement differently: OpenCV's bilinear resize vs F.interpolate and the min-max's 1e-7 guard,
        # amplified where a map's range is small. The correlation below checks the shape independently.
        np.testing.assert_allclose(ours.cam.numpy(), peer, atol=1e-3)
        for i in range(3):
            if peer[i].std() > 0:  # a class whose Grad-CAM is ReLU-ed to zero has no correlation
                assert _pearson(ours.cam[i].numpy(), peer[i]) >= 0.99
                compared += 1
        if targets is not None:
            assert ours.targets.tolist() == targets.tolist()
    assert compared >= 3


def test_gradcam_toy_values():
    # ALGORITHMS.md §1.5: 2 channels, 3×3
    a = torch.tensor([[[1, 0, 2], [0, 3, 1], [1, 1, 0]], [[0, 2, 0], [1, 0, 1], [4, 0, 0]]], dtype=torch.float64)
    g = torch.tensor([[[.1, .2, 0], [.1, .3, .1], [0, .1, 0]], [[-.2, 0, -.1], [0, -.1, 0], [-.1, 0, -.4]]],
                     dtype=torch.float64)
    cam = GradCAM()
    # float64 against exact decimal hand values: the float64 defaults cover their binary rounding
    torch.testing.assert_close(cam.cam_weights(a[None], g[None]), torch.tensor([[0.1, -0.1]], dtype=torch.float64))
    raw = cam.combine(a[None], g[None])
    torch.testing.assert_close(raw[0], torch.tensor([[.1, 0, .2], [0, .3, 0], [0, .1, 0]], dtype=torch.float64))
    expected = torch.tensor([[1 / 3, 0, 2 / 3], [0, 1, 0], [0, 1 / 3, 0]], dtype=torch.float64)
    # the min-max divides by (max - min + 1e-7): a relative shift of 1e-7 / 0.3 = 3.3e-7 < atol 1e-6
    torch.testing.assert_close(minmax(raw)[0], expected, atol=1e-6, rtol=0)  # with the 1e-7 term
    assert minmax(raw)[0, 0, 0].item() == pytest.approx(0.333333, abs=1e-6)  # printed to 6 decimals


def test_gradcam_is_one_forward_and_no_parameter_gradients():
    model = build_classifier("smallcnn", num_classes=4).eval()
    calls = []
    model.net.stages[0].register_forward_hook(lambda *a: calls.append(1))
    compute_cam(model, torch.rand(8, 3, 32, 32))
    assert len(calls) == 1
    assert all(p.grad is None for p in model.parameters())  # backward stops at the target layer


# ---- native CAM ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["smallcnn", "resnet18"])
def test_native_cam_is_fc_weights_times_features(backbone):
    model = build_classifier(backbone, num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)
    out = compute_cam(model, x, "native")
    with torch.no_grad():
        feats = model.net.forward_features(model.normalize(x))
        weight = model.net.get_classifier().weight if hasattr(model.net, "get_classifier") else model.net.fc.weight
        raw = torch.einsum("bchw,bc->bhw", feats, weight[out.targets])
        expected = minmax(torch.nn.functional.interpolate(minmax(raw)[:, None], size=(64, 64), mode="bilinear")[:, 0])
        torch.testing.assert_close(out.logits, model(x))  # the same float32 forward: the defaults
    # float32 einsum over C channels (512 for resnet18) vs the library's own contraction order: ~1e-6 relative
    # to the raw map, passed through two min-max normalisations into [0, 1]; atol 1e-5 covers a range >= ~0.1
    # of the raw values (the maps here span their full range: the max is 1, the min 0)
    torch.testing.assert_close(out.cam, expected, atol=1e-5, rtol=0)
    assert out.cam.amin((1, 2)).max() == 0 and out.cam.amax((1, 2)).min() > 0.999


def test_native_cam_uses_the_models_cam_method():
    class CamModel(nn.Module):  # Top-GAP-like: the head's output is the CAM
        def cam(self, x):
            return torch.stack([x[:, 0], -x[:, 0]], 1)[..., ::2, ::2]

        def forward(self, x):
            return self.cam(x).flatten(2).topk(4, -1).values.mean(-1)

    x = torch.rand(2, 3, 16, 16)
    out = CAM_METHODS.get("native")()(CamModel(), x, torch.tensor([0, 1]))  # the same float32 ops: defaults
    torch.testing.assert_close(out.cam[0], minmax(torch.nn.functional.interpolate(
        minmax(x[:1, 0, ::2, ::2])[:, None], size=(16, 16), mode="bilinear")[:, 0])[0])
    assert out.targets.tolist() == [0, 1]


def test_native_cam_refuses_heads_that_are_not_gap_linear():
    model = build_classifier("convnext_atto", num_classes=3).eval()  # LayerNorm after pooling
    with pytest.raises(ValueError, match="gradcam"):
        compute_cam(model, torch.rand(2, 3, 64, 64), "native")


def test_cam_registry_names_and_unknown():
    assert {"gradcam", "native"} <= set(CAM_METHODS.names())
    with pytest.raises(ValueError, match="valid: .*gradcam"):
        CAM_METHODS.get("gradcam++")


# ---- gradients ----------------------------------------------------------------------------------------
class SumSquares(nn.Module):
    def forward(self, x):
        return (x**2).sum(1, keepdim=True)


def test_ig_sanity_values():
    # ALGORITHMS.md §4.7: f = Σx², x = [1, 2], zero baseline
    x, t = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([0])
    # float64: the trapezoid rule is exact for the linear integrand 2·α·x; riemann_right over 100 steps gives
    # (1 + 1/100) times it. The float64 defaults (rtol 1e-7) are ~1e9 x its rounding
    ig = integrated_gradients(SumSquares(), x, t, steps=101, rule="trapezoid")
    torch.testing.assert_close(ig, torch.tensor([[1.0, 4.0]], dtype=torch.float64))
    assert ig.sum().item() == pytest.approx(5.0)  # completeness: f(x) - f(0)
    ig = integrated_gradients(SumSquares(), x, t, steps=100, rule="riemann_right")
    torch.testing.assert_close(ig, torch.tensor([[1.01, 4.04]], dtype=torch.float64))


def test_ig_batched_over_steps_equals_small_chunks_and_completeness():
    model = build_classifier("smallcnn", num_classes=3).eval().double()
    x, t = torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2])
    big = integrated_gradients(model, x, t, steps=32, max_batch=10_000)
    small = integrated_gradients(model, x, t, steps=32, max_batch=5)
    torch.testing.assert_close(big, small)  # float64, the same sums batched differently: the float64 defaults
    with torch.no_grad():
        gap = model(x).gather(1, t[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
    # completeness holds for the exact integral; 32 Riemann steps of a piecewise-smooth ReLU net leave a
    # quadrature error of a few % of f(x) - f(0): rtol 5 % covers the method, not rounding (float64 here)
    torch.testing.assert_close(big.flatten(1).sum(1), gap, rtol=0.05, atol=1e-3)


def test_vanilla_gradient_of_a_linear_model_is_its_weights():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.rand(4, 3, 2, 2)
    g = vanilla_gradient(lin, x, torch.tensor([0, 1, 2, 1]))
    torch.testing.assert_close(g.flatten(1), lin[1].weight[[0, 1, 2, 1]])  # d(Wx + b)/dx = W: exact, defaults


# ---- boxes --------------------------------------------------------------------------------------------
def _spec_map() -> torch.Tensor:
    m = torch.zeros(8, 8)
    m[1:3, 1:4] = 0.9   # 2×3 blob, rows 1-2, cols 1-3
    m[5, 0] = 0.6       # single pixel
    m[5:8, 4:8] = 0.7   # 3×4 blob
    m[0, 7] = 0.3       # below the threshold
    return m


def test_boxes_spec_example():
    # ALGORITHMS.md §1.5: inclusive (x1,y1,x2,y2,area) = (1,1,3,2,6), (0,5,0,5,1), (4,5,7,7,12)
    mask = (_spec_map() >= 0.5).to(torch.uint8).numpy()
    found = sorted((x1, y1, x2 - 1, y2 - 1, area) for x1, y1, x2, y2, area in contour_boxes(mask))
    assert found == [(0, 5, 0, 5, 1), (1, 1, 3, 2, 6), (4, 5, 7, 7, 12)]
    cam = _spec_map()[None]
    assert cam_boxes(cam, 0.5, "largest").tolist() == [[4, 5, 8, 8]]   # inclusive (4,5,7,7)
    assert cam_boxes(cam, 0.5, "union").tolist() == [[0, 1, 8, 8]]     # inclusive (0,1,7,7)


def test_synthetic_blobs_give_exact_boxes():
    g = torch.Generator().manual_seed(0)
    h, w, n = 48, 64, 16
    cam = torch.rand(n, h, w, generator=g) * 0.4  # background noise below the threshold
    expected_big, expected_union = [], []
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(n):
        x1, y1 = (int(v) for v in torch.randint(0, 20, (2,), generator=g))
        bw, bh = (int(v) for v in torch.randint(8, 20, (2,), generator=g))
        cy, cx = y1 + bh / 2, x1 + bw / 2  # an ellipse blob inside the box, touching its edges
        inside = ((yy + 0.5 - cy) / (bh / 2)) ** 2 + ((xx + 0.5 - cx) / (bw / 2)) ** 2 <= 1
        cam[i][inside] = 0.6 + 0.4 * torch.rand(int(inside.sum()), generator=g)
        rows, cols = inside.nonzero(as_tuple=True)
        big = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        cam[i, h - 3:h - 1, w - 3:w - 1] = 0.8  # a small second blob, far away
        expected_big.append([float(v) for v in big])
        expected_union.append([float(big[0]), float(big[1]), float(w - 1), float(h - 1)])
    assert cam_boxes(cam, 0.5, "largest").tolist() == expected_big
    assert cam_boxes(cam, 0.5, "union").tolist() == expected_union


def test_boxes_otsu_and_empty():
    cam = torch.zeros(2, 16, 16)
    cam[0, 4:8, 2:10] = 0.3  # bimodal: Otsu separates 0 from 0.3 where a 0.5 threshold finds nothing
    assert cam_boxes(cam[:1], "otsu").tolist() == [[2, 4, 10, 8]]
    out = cam_boxes(cam, 0.5)
    assert torch.isnan(out).all()  # no pixel above the threshold -> no box


# ---- the explain evaluation group ----------------------------------------------------------------------
def _ctx(extra=None):
    explain = {"ifia_steps": 2, "ifia_ig_steps": 2, "ig_steps": 4, "ros_samples": 2, "road_fractions": [0.2, 0.6],
               "attr_topk": 20, **(extra or {})}
    cfg = TrialConfig.parse({"evaluation": {"groups": ["explain"], "batch_size": 8, "explain": explain}})
    model = build_classifier("smallcnn", num_classes=3).eval()
    return EvalContext(model=model, cfg=cfg, regime=build_regime(cfg), device=torch.device("cpu"), num_classes=3)


def _data(model, n=8, size=32, boxes=True):
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)
    with torch.no_grad():
        labels = model(images.float() / 255).argmax(1)
    labels[::3] = (labels[::3] + 1) % 3  # a third misclassified
    box = torch.tensor([[4.0, 6.0, 20.0, 24.0]]).repeat(n, 1) if boxes else None
    masks = torch.zeros(n, size, size, dtype=torch.uint8) if boxes else None
    if masks is not None:
        masks[:, 6:24, 4:20] = 1
    return TensorSplit(images, labels, box, masks)


def _explain(ctx, data) -> dict:
    out = evaluate(ctx, data)
    del out["cost/eval_seconds"]
    return out


def test_explain_group_keys_tags_and_gallery():
    ctx = _ctx()
    out = _explain(ctx, _data(ctx.model))
    assert set(out) <= set(keys_of_group("explain")) and all(k in KEYS for k in out)
    for key in ("explain/box_iou", "explain/mask_iou", "explain/pointing", "explain/cam_l1", "explain/gini_vg",
                "explain/gini_ig", "explain/road_aopc"):
        assert key in out and math.isfinite(out[key])
    assert 0 <= out["explain/box_iou"] <= 1 and 0 <= out["explain/cam_l1"] <= 1
    assert 0 < out["explain/box_iou_random"] < 0.5  # chance level for a 16x18 box in a 32x32 image
    assert ctx.tags["cam_kind"] == "gradcam"
    fig = ctx.artifacts["cam_gallery"]
    assert len(fig.axes) == 2 * 8  # gallery_images = 8 rows of (image, overlay)


def test_explain_group_without_boxes_tags_the_reason():
    ctx = _ctx({"metrics": ["box_iou", "pointing", "mask_iou", "cam_l1"], "cam": "native", "gallery_images": 0})
    out = _explain(ctx, _data(ctx.model, boxes=False))
    assert set(out) == {"explain/cam_l1"}
    assert "no ground-truth boxes" in ctx.tags["absent.explain/box_iou"]
    assert "no ground-truth masks" in ctx.tags["absent.explain/mask_iou"]
    assert ctx.tags["cam_kind"] == "native" and "cam_gallery" not in ctx.artifacts


def test_explain_group_admits_only_correct_images_for_attributions():
    ctx = _ctx({"metrics": ["gini_vg", "cam_l1"], "gallery_images": 0})
    data = _data(ctx.model)
    batch = {k: torch.stack([data[i][k] for i in range(8)]) for k in ("image", "label")}
    evaluate(ctx, data)
    table = ctx.artifacts["per_image"]
    assert table["index"].tolist() == list(range(8)) and table["label"].tolist() == batch["label"].tolist()
    values = {k: torch.tensor(table[k].to_numpy()) for k in ("explain/gini_vg", "explain/cam_l1")}
    with torch.no_grad():
        correct = ctx.model(batch["image"]).argmax(1) == batch["label"]
    assert torch.equal(~torch.isnan(values["explain/gini_vg"]), correct)
    assert not torch.isnan(values["explain/cam_l1"]).any()
