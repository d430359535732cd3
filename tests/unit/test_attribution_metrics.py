"""Attribution-quality metrics (incl. ROAD, ``metrics/road.py``) against hand values (ALGORITHMS.md §3.6,
§4.7) and peers (scikit-image SSIM, scipy Kendall τ, pytorch-grad-cam's ROAD imputer and ROAD metric)."""
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from trainables.explain.gradients import vg_map
from trainables.metrics.attribution import (
    attribution_robustness,
    gini,
    ifia_attack,
    kendall_tau,
    kendall_tau_masked,
    relative_output_stability,
    ros_objective,
    softplus_copy,
    ssim,
    ssim_stability,
    topk_intersection,
)
from trainables.metrics.road import aopc, most_relevant_keep_mask, noisy_linear_impute, road_curve
from trainables.models import build_classifier

f64 = torch.float64


# ---- Gini ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vector, plain, quantus", [
    ([0, 0, 0, 1], 0.75, 0.75),
    ([1, 1, 1, 1], 0.0, 0.0),
    ([1, 2, 3, 4], 0.25, 0.25),
    ([0, 0, 1, 3], 0.625, 0.625),
    ([-3, 1, 0, 0], 0.625, 0.625),          # |a| first
    ([0, 0, 0, 0.5], 0.75, 0.75),           # scale invariant
    ([5] + [0] * 9, 0.9, 0.899999),
    ([1] * 999 + [1000], 0.499250, 0.499225),
])
def test_gini_hand_values(vector, plain, quantus):
    # float64 against hand values printed to 6 decimals: abs=1e-6 is their precision
    a = torch.tensor([vector], dtype=f64)
    assert gini(a, eps=0.0, normalise=False).item() == pytest.approx(plain, abs=1e-6)
    assert gini(a).item() == pytest.approx(quantus, abs=1e-6)


def test_gini_one_hot_and_batch_shape():
    a = torch.zeros(2, 3, 32, 32, dtype=f64)
    a[:, 0, 0, 0] = 1
    # float64 sum over 3072 entries vs the closed form: rounding ~1e-13, approx's default rel 1e-6 is ample
    assert gini(a, eps=0.0).tolist() == pytest.approx([1 - 1 / 3072] * 2)  # 0.999674
    assert gini(a.permute(0, 3, 2, 1) * 7.0, eps=0.0).tolist() == pytest.approx([1 - 1 / 3072] * 2)


# ---- SSIM ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("win_size, data_range", [(5, 2.0), (7, 1.0), (3, 0.5)])
def test_ssim_equals_scikit_image(win_size, data_range):
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 20, 24, generator=g, dtype=f64)
    b = 0.7 * a + 0.3 * torch.rand(3, 20, 24, generator=g, dtype=f64)
    b[2] = a[2] * 1e-3  # tiny maps: C1, C2 dominate (the authors' raw-gradient pitfall)
    ours = ssim(a, b, win_size, data_range)
    ref = [structural_similarity(a[i].numpy(), b[i].numpy(), win_size=win_size, data_range=data_range)
           for i in range(3)]
    # float64 on both sides, the same formula with windowed sums of <= 49 terms in another order: rounding
    # ~1e-15, so atol 1e-12 is a float64 equality with margin (also for the tiny maps, where C1, C2 dominate)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)
    assert ssim(a, a, win_size, data_range).tolist() == pytest.approx([1.0] * 3)  # exact up to float64 rounding


def test_ssim_stability_limits_and_admission():
    model = build_classifier("smallcnn", num_classes=3).eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 3  # image 0: noisy prediction never equals its label -> not admitted
    out = ssim_stability(model, x, y, vg_map, sigmas=(0.0, 0.05), win_size=5,
                         generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 2)
    assert torch.isnan(out[0]).all()
    # σ = 0: identical maps, so SSIM is 1 up to float32 rounding of its ratio of windowed sums (~1e-6 at most)
    torch.testing.assert_close(out[1:, 0], torch.ones(3), atol=1e-5, rtol=0)  # σ = 0: identical maps
    kept = ~torch.isnan(out[1:, 1])
    assert (out[1:, 1][kept] <= 1 + 1e-6).all()  # SSIM <= 1 (Cauchy-Schwarz), + float32 rounding (~8 ulps)


# ---- ROS ----------------------------------------------------------------------------------------------
def test_ros_objective_hand_values():
    e = torch.tensor([[[0.2, 0.0], [0.4, 0.1]]], dtype=f64)
    e2 = torch.tensor([[[0.25, 0.05], [0.3, 0.1]]], dtype=f64)
    h, h2 = torch.tensor([[2.0, 0.5, -1.0]], dtype=f64), torch.tensor([[1.9, 0.6, -1.0]], dtype=f64)
    ros = ros_objective(e, e2, h, h2)
    # float64 against hand values: 353553.39 has 8 significant digits (rel 1e-7 covers their last one),
    # log10 to 4 decimals, 4.330127 to 6; the last line is a closed form in float64 (rel 1e-9)
    assert ros.item() == pytest.approx(353553.39, rel=1e-7)
    assert math.log10(ros.item()) == pytest.approx(5.5485, abs=1e-4)
    e[0, 0, 1] = 0.1
    assert ros_objective(e, e2, h, h2).item() == pytest.approx(4.330127, abs=1e-6)
    assert ros_objective(e, e2, h, h).item() == pytest.approx(math.sqrt(0.375) / 1e-6, rel=1e-9)  # ε guard on logits


def test_ros_is_nan_when_a_perturbation_flips_the_prediction():
    class Threshold(nn.Module):  # class 1 once the mean brightness passes 0.55
        def forward(self, x):
            m = x.flatten(1).mean(1, keepdim=True)
            return torch.cat([0.55 - m, m - 0.55], 1)

    x = torch.full((2, 1, 8, 8), 0.3)
    x[1] = 0.5  # + U(0.02, 0.2) crosses 0.55 for most samples
    out = relative_output_stability(Threshold(), x, torch.tensor([0, 0]), lambda m, z, t: z[:, 0] + 1.0, samples=5,
                                    generator=torch.Generator().manual_seed(0))
    assert math.isfinite(out[0].item()) and out[0] > 0
    assert math.isnan(out[1].item())


# ---- ROAD ---------------------------------------------------------------------------------------------
def test_imputation_hand_values():
    ramp = torch.arange(16, dtype=f64).view(1, 1, 4, 4)
    keep = torch.ones(1, 4, 4, dtype=torch.bool)
    keep[:, 1:3, 1:3] = False
    # float64 CG solved to a residual of 1e-12 against hand values: the float64 defaults (rtol 1e-7) for the
    # exact ones (an affine ramp is reproduced exactly), abs 1e-5 / 1e-6 for the printed 0.43956 / 0.131868
    torch.testing.assert_close(noisy_linear_impute(ramp, keep, noise=0.0, tol=1e-12), ramp)  # affine: exact
    img = torch.tensor([[1, 2, 3], [4, 0, 6], [7, 8, 9]], dtype=f64).view(1, 1, 3, 3)
    centre = torch.ones(1, 3, 3, dtype=torch.bool)
    centre[0, 1, 1] = False
    assert noisy_linear_impute(img, centre, 0.0, tol=1e-12)[0, 0, 1, 1].item() == pytest.approx(5.0)
    corner = torch.ones(1, 3, 3, dtype=torch.bool)
    corner[0, 0, 0] = False
    assert noisy_linear_impute(img, corner, 0.0, tol=1e-12)[0, 0, 0, 0].item() == pytest.approx(2.4)
    top = torch.zeros(1, 1, 4, 4, dtype=f64)
    top[..., 0, :] = 1
    out = noisy_linear_impute(top, keep, 0.0, tol=1e-12)[0, 0]
    assert out[1, 1:3].tolist() == pytest.approx([0.43956] * 2, abs=1e-5)
    assert out[2, 1:3].tolist() == pytest.approx([0.131868] * 2, abs=1e-6)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_imputation_equals_pytorch_grad_cam(fraction):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g)
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    blob = torch.stack([torch.exp(-((yy - 10) ** 2 + (xx - 14) ** 2) / 40), torch.rand(24, 24, generator=g)])
    keep = most_relevant_keep_mask(blob, fraction)
    assert (~keep).flatten(1).sum(1).tolist() == [round(fraction * 576)] * 2
    ours = noisy_linear_impute(x, keep, noise=0.0, tol=1e-7)
    peer = torch.stack([NoisyLinearImputer(noise=0.0)(x[i], keep[i].float()) for i in range(2)])
    # float32 on purpose: the peer only runs float32 (a float64 image fails in its index_put). The same sparse
    # system, solved by float32 CG to a residual of ~1e-7 vs the peer's direct solve: the error grows with the
    # system's conditioning, i.e. with the removed fraction; measured 5e-7 / 2.7e-6 / 1.4e-5 for 10 / 50 / 90 %
    # (AVX2 and SSE4.1 alike) on pixels in [0, 1], so atol 1e-4 is 7x above the worst
    torch.testing.assert_close(ours, peer, atol=1e-4, rtol=0)


def test_aopc_hand_values():
    acc = torch.tensor([[0.98, 0.9, 0.8, 0.7, 0.62, 0.55, 0.5, 0.45, 0.4, 0.36, 0.33, 0.3, 0.28, 0.26, 0.24, 0.22,
                         0.2, 0.18, 0.16, 0.15]], dtype=f64)
    # float64 against hand values printed to 6 decimals
    assert aopc(acc, acc[:, 0]).item() == pytest.approx(0.524762, abs=1e-6)        # authors' code
    assert aopc(acc, torch.ones(1, dtype=f64)).item() == pytest.approx(0.543810, abs=1e-6)  # paper, x⁽⁰⁾ = 1.0


class BlobLinear(nn.Module):
    """Class 0 logit = Σ w·x with w a Gaussian blob (its relevance map is known); class 1 = a constant."""

    def __init__(self, size=24, threshold=0.0):
        super().__init__()
        yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
        self.register_buffer("w", torch.exp(-((yy - 9) ** 2 + (xx - 13) ** 2) / 30))
        self.threshold = threshold

    def forward(self, x):
        s = (x.mean(1) * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.full_like(s, self.threshold)], 1)


def test_road_agrees_with_pytorch_grad_cam_in_direction_and_ordering():
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    centres = 6 + 12 * torch.rand(6, 2, generator=g)  # a bright object near the weights' blob
    obj = torch.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 20)
    x = (0.15 + 0.7 * obj[:, None] + 0.1 * torch.rand(6, 3, 24, 24, generator=g)).clamp(0, 1)
    model = BlobLinear()
    relevance = x.mean(1) * model.w  # exact per-pixel contribution to the class-0 logit
    maps = {"faithful": relevance, "random": torch.rand(6, 24, 24, generator=g), "inverted": -relevance}
    targets = [ClassifierOutputTarget(0)] * 6
    y = torch.zeros(6, dtype=torch.long)
    with torch.no_grad():
        clean = model(x)[:, 0]
    model.threshold = float(clean.min()) * 0.9  # every clean image is class 0, with a margin
    peer_score, our_change, our_aopc = {}, {}, {}
    for name, m in maps.items():
        torch.manual_seed(0)
        peer = [ROADMostRelevantFirst(percentile=p)(x, m.numpy(), targets, model) for p in (10, 30, 50, 70, 90)]
        peer_score[name] = float(np.mean(peer))
        changes = []
        for f in (0.9, 0.7, 0.5, 0.3, 0.1):  # removing the top (100 - p) % = fraction f
            xi = noisy_linear_impute(x, most_relevant_keep_mask(m, f), noise=0.01,
                                     generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                changes.append(float((model(xi)[:, 0] - clean).mean()))
        our_change[name] = float(np.mean(changes))
        curve = road_curve(model, x, y, m, (0.1, 0.3, 0.5, 0.7, 0.9), generator=torch.Generator().manual_seed(2))
        our_aopc[name] = float(aopc(curve, torch.ones(6)).mean())
    # direction: removing the faithful map's top pixels lowers the target output (both implementations)
    assert peer_score["faithful"] < 0 and our_change["faithful"] < 0 and our_aopc["faithful"] > 0
    # ordering: faithful < random < inverted in output change, and the reverse in our AOPC
    order = sorted(maps, key=peer_score.get)
    assert order == ["faithful", "random", "inverted"]
    assert sorted(maps, key=our_change.get) == order
    assert our_aopc["faithful"] > our_aopc["random"] >= our_aopc["inverted"]  # AOPC: higher = more faithful
    # same imputer and model, but each side draws its own imputation noise (σ 0.01, other seeds): 2 % of the
    # faithful map's effect (+ 1e-3 absolute) covers that sampling difference, not rounding
    for name in maps:  # same imputer, same model: the output changes agree closely
        assert our_change[name] == pytest.approx(peer_score[name], abs=0.02 * abs(peer_score["faithful"]) + 1e-3)


def test_road_keep_mask_counts():
    attr = torch.arange(20.0).view(1, 4, 5)
    keep = most_relevant_keep_mask(attr, 0.25)
    assert (~keep).sum() == 5 and not keep.flatten()[-5:].any()


# ---- top-k, Kendall ------------------------------------------------------------------------------------
def test_kendall_and_topk_hand_values():
    # ALGORITHMS.md §4.7
    a = torch.tensor([[.9, .1, .5, .3, 0, .7, .2, .4]], dtype=f64)
    b = torch.tensor([[.8, .2, .1, .3, .05, .9, .6, .4]], dtype=f64)
    # hand values: exact fractions of pair counts (approx's default rel 1e-6) and 0.888889 printed to 6 decimals
    assert kendall_tau(a, b).item() == pytest.approx(0.5)
    assert kendall_tau(a * 8 / a.sum(), b * 8 / b.sum()).item() == pytest.approx(0.5)  # scale invariant
    assert topk_intersection(a, b, 3).item() == pytest.approx(2 / 3)
    assert kendall_tau_masked(a, b, a.topk(3).indices).item() == pytest.approx(0.888889, abs=1e-6)


@pytest.mark.parametrize("n, levels", [(7, None), (257, None), (1024, 4), (4096, 20), (3, 1)])
def test_kendall_equals_scipy(n, levels):
    g = torch.Generator().manual_seed(n)
    a = torch.rand(3, n, generator=g, dtype=f64)
    b = 0.6 * a + torch.rand(3, n, generator=g, dtype=f64)
    if levels:  # many ties
        a, b = (a * levels).floor(), (b * levels).floor()
    ours = kendall_tau(a.view(3, 1, -1), b.view(3, -1, 1))
    ref = [scipy.stats.kendalltau(a[i].numpy(), b[i].numpy()).statistic for i in range(3)]
    # float64 pair counts (exact integers up to 2^53) and one division / square root: a float64 equality,
    # atol 1e-12 >> rounding ~1e-16
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)


# ---- IFIA ----------------------------------------------------------------------------------------------
def test_softplus_copy_swaps_relus_only_in_the_copy():
    model = build_classifier("smallcnn", num_classes=3).eval()
    smooth = softplus_copy(model, beta=50.0)
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in smooth.modules())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        # not a rounding tolerance: softplus_50 exceeds ReLU by <= ln2/50 = 0.014 per unit, accumulated over
        # the net's layers; 0.2 / 10 % says "close", a broken swap (e.g. a plain softplus) is far outside
        torch.testing.assert_close(smooth(x), model(x), atol=0.2, rtol=0.1)  # close to the ReLU net


def test_ifia_attack_stays_in_the_box_and_keeps_the_prediction():
    model = build_classifier("smallcnn", num_classes=3).eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 8 / 255
    adv, found = ifia_attack(model, x, y, k=20, eps=eps, step=2 / 255, steps=3, ig_steps=2,
                             generator=torch.Generator().manual_seed(0))
    # + 1e-6: float32 rounding of x + δ and of adv - x on pixels in [0, 1] (<= 6e-8 each), with margin
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert (model(adv[found]).argmax(1) == y[found]).all()
    assert found.any()
    topk, tau = attribution_robustness(model, x, y, k=20, steps=2, attack_ig_steps=2, eval_ig_steps=4,
                                       generator=torch.Generator().manual_seed(0))
    ok = ~torch.isnan(topk)
    assert ok.any() and ((topk[ok] >= 0) & (topk[ok] <= 1)).all() and ((tau[ok] >= -1) & (tau[ok] <= 1)).all()


def _input_hvp(model, x):
    """|d/dx <∇_x Σ logits, 1>|: zero for a piecewise-linear network."""
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).sum(), xg, create_graph=True)
    if not g.requires_grad:
        return 0.0
    (h,) = torch.autograd.grad(g.sum(), xg, allow_unused=True)
    return 0.0 if h is None else float(h.abs().sum())


def _act_net(act):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act, nn.Conv2d(8, 8, 3, padding=1), act,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("act", [nn.ReLU6(), nn.LeakyReLU(0.1), nn.Hardtanh(-0.5, 0.5), nn.ReLU()],
                         ids=lambda a: type(a).__name__)
def test_smooth_copy_of_piecewise_linear_activations(act):
    from trainables.metrics.smooth import smoothness_problem

    torch.manual_seed(0)
    model, x = _act_net(act), torch.rand(2, 3, 8, 8)
    assert _input_hvp(model, x) == 0.0  # the network itself: no second-order signal
    smooth = softplus_copy(model, beta=50.0)
    assert _input_hvp(smooth, x) > 0 and smoothness_problem(smooth, x) is None
    with torch.no_grad():
        # approximation, not rounding: softplus_50 vs the kink, <= ln2/50 = 0.014 per unit over two layers
        torch.testing.assert_close(smooth(x), model(x), atol=0.05, rtol=0.05)  # close to the original


def test_smooth_copy_of_an_art_model_is_smooth():
    from trainables.regimes.art import SwitchReLU, swap_relu

    torch.manual_seed(0)
    model = build_classifier("smallcnn", num_classes=3)
    assert swap_relu(model, 50.0) > 0
    model.eval()
    x = torch.rand(2, 3, 16, 16)
    smooth = softplus_copy(model, beta=50.0)
    assert not any(isinstance(m, SwitchReLU) for m in smooth.modules())
    assert _input_hvp(model, x) == 0.0 and _input_hvp(smooth, x) > 0


def _eval_map(model, z, y):
    from trainables.explain.gradients import ce_score, channel_map, integrated_gradients

    return channel_map(integrated_gradients(model, z, y, 8, "trapezoid", score=ce_score), "mean_abs")


def test_ifia_lowers_topk_and_kendall_more_than_random_noise_of_the_same_budget():
    from calibrated import calibrated

    model, x, y = calibrated("smallcnn", 3, size=16, n=8, seed=0)
    k, eps, g = 20, 8 / 255, torch.Generator().manual_seed(0)
    adv, found = ifia_attack(model, x, y, k=k, eps=eps, step=2 / 255, steps=8, ig_steps=4, generator=g)
    noise = (x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
    with torch.no_grad():
        kept = found & (model(noise).argmax(1) == y)
    assert kept.sum() >= 4
    clean, m_adv, m_noise = (_eval_map(model, z[kept], y[kept]) for z in (x, adv, noise))
    assert topk_intersection(clean, clean, k).eq(1).all() and kendall_tau(clean, clean).eq(1).all()
    top_adv, top_noise = topk_intersection(clean, m_adv, k).mean(), topk_intersection(clean, m_noise, k).mean()
    tau_adv, tau_noise = kendall_tau(clean, m_adv).mean(), kendall_tau(clean, m_noise).mean()
    assert top_adv < 1 and tau_adv < 1
    assert top_adv < top_noise and tau_adv < tau_noise
