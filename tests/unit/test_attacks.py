"""trainables.attacks: hand values (ALGORITHMS.md §1.5, §5.6), peers (torchattacks, foolbox), analytic limits."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.attacks import fgsm, make_adversarial, minimal_distance, pgd, pgd_l2
from trainables.attacks.explanation import explain, explanation_figure, runner_up
from trainables.attacks.generators import GENERATORS, build_generator, validate_generator
from trainables.attacks.minimal import l2_ball, l2min
from trainables.attacks.norms import ramp_sizes, rmse
from calibrated import calibrated


def _model(name="smallcnn", classes=5, size=32, n=16, seed=0):
    """An eval-mode Classifier whose BN statistics are the batch's (so predictions vary between images) and a
    batch labelled with the model's own predictions (clean accuracy 100 %)."""
    return calibrated(name, classes, size, n, seed)


class Linear2(nn.Module):
    """logits = [0, w·x + b] on flattened inputs: the decision boundary is the hyperplane w·x + b = 0."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32).flatten())
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


# ---- hand values ----------------------------------------------------------------------------------------
def test_fgsm_hand_values():
    """§1.5: x = [0.2, 0.5, 0.99, 0], ∇ = [0.3, −0.1, 0.5, −2], ε = 8/255 -> [0.231373, 0.468627, 1, 0]."""
    model = Linear2([0.3, -0.1, 0.5, -2.0])  # ∇_x CE(., y=0) = σ(w·x)·w: the sign of ∇ is the sign of w
    x = torch.tensor([[0.2, 0.5, 0.99, 0.0]])
    out = fgsm(model, x, torch.tensor([0]), 8 / 255)
    assert torch.allclose(out, torch.tensor([[0.231373, 0.468627, 1.0, 0.0]]), atol=1e-6)  # printed to 6 decimals


def test_ramp_schedules():
    """§5.6: L2,min ε = 0.1 step RMSEs and the ARA attack's first / second / last step (ε = 20, 450 steps).
    Hand values printed to 6 decimals (abs=1e-6); the sums are float64 sums of <= 450 terms (approx rel 1e-6)."""
    assert ramp_sizes(0.1, 7) == pytest.approx([0.025, 0.021429, 0.017857, 0.014286, 0.010714, 0.007143, 0.003571], abs=1e-6)
    s = ramp_sizes(20, 450)
    assert (s[0], s[1], s[-1]) == pytest.approx((0.088692, 0.088495, 0.000197), abs=1e-6)
    assert sum(s) == pytest.approx(20) and sum(ramp_sizes(0.01, 7)) == pytest.approx(0.01)


# ---- peers ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_fgsm_pgd_match_torchattacks(name):
    import torchattacks as ta
    m, x, y = _model(name, n=8)
    # float64: the sign steps of FGSM / PGD are discontinuous where a gradient entry is ~0, so a float32
    # rounding difference between the two implementations could flip a pixel by 2α; in float64 both agree to
    # rounding (measured: to the bit, in float32 and float64 alike, on AVX2)
    m, x = m.double(), x.double()
    eps = 8 / 255
    pairs = [
        (fgsm(m, x, y, eps), ta.FGSM(m, eps=eps)(x, y)),
        (pgd(m, x, y, eps, steps=10, alpha=2 / 255), ta.PGD(m, eps=eps, alpha=2 / 255, steps=10, random_start=False)(x, y)),
        (pgd_l2(m, x, y, 0.5, steps=10, alpha=0.1), ta.PGDL2(m, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)),
    ]
    for ours, peer in pairs:
        assert ours.dtype == peer.dtype == torch.float64
        # 1e-5 << one sign step (2/255 = 7.8e-3): no pixel stepped the other way; projections / clamps in
        # another order differ by float64 rounding (~1e-16)
        assert (ours - peer).abs().max() <= 1e-5
        with torch.no_grad():
            assert torch.equal(m(ours).argmax(1) == y, m(peer).argmax(1) == y)  # same robust accuracy
    assert all(p.requires_grad and p.grad is None for p in m.parameters())


def test_pgd_l2_matches_foolbox_robust_accuracy():
    import foolbox as fb
    m, x, y = _model("smallcnn", size=16, n=128)
    eps, steps, rel = 0.05, 10, 0.2
    _, advs, success = fb.attacks.L2PGD(rel_stepsize=rel, steps=steps, random_start=False)(
        fb.PyTorchModel(m, bounds=(0, 1)), x, y, epsilons=eps)
    ours = pgd_l2(m, x, y, eps, steps=steps, alpha=rel * eps)
    with torch.no_grad():
        acc_ours = (m(ours).argmax(1) == y).float().mean().item()
    acc_peer = 1 - success.float().mean().item()
    assert 0.05 < acc_peer < 0.95  # a meaningful operating point
    # float32 (foolbox's PyTorchModel): at most 1 of the 128 images (0.0078) may differ, one whose final
    # iterate lies within rounding of the decision boundary
    assert abs(acc_ours - acc_peer) <= 0.01
    # L2 norm of 768 float32 entries after projection to ε = 0.05: rounding ~sqrt(768) x 6e-8 x ... << 1e-5
    assert float((ours - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5


# ---- properties ----------------------------------------------------------------------------------------------
def test_pgd_stays_in_ball_and_range():
    m, x, y = _model()
    for norm, eps in (("linf", 4 / 255), ("l2", 0.3)):
        adv = pgd(m, x, y, eps, steps=5, norm=norm, random_start=True)
        d = (adv - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        # + 1e-6: float32 rounding of x + δ (<= 6e-8 per pixel in [0, 1]) and of the norm's cascade sum over
        # 3072 entries (~1e-7 relative), well inside 1e-6
        assert float(size.max()) <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():  # the attack lowers accuracy (labels = clean predictions)
        assert (m(pgd(m, x, y, 16 / 255)).argmax(1) == y).float().mean() < 1


def test_attack_mode_restores_state_and_disables_autocast():
    m, x, y = _model()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    a = pgd(m, x, y, 4 / 255, steps=3, bn="eval")
    assert m.training and all(mod.training for mod in m.modules())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # eval BN: no running-stat update
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = pgd(m, x, y, 4 / 255, steps=3, bn="eval")
    assert b.dtype == torch.float32 and torch.allclose(a, b)  # autocast is off inside: the same float32 run
    pgd(m, x, y, 4 / 255, steps=2, bn="keep")  # train mode (the authors' choice): running stats move
    assert not torch.equal(before["net.stages.0.1.running_mean"], m.state_dict()["net.stages.0.1.running_mean"])


def test_l2_training_attacks():
    m, x, y = _model(n=8)
    adv = l2_ball(m, x, y, eps=0.05, steps=7)
    assert float(rmse(adv - x).max()) <= 0.05 + 1e-6  # + float32 rounding of x + δ and the RMSE sum, as above
    best = l2min(m, x, y, eps=0.5, steps=7)
    with torch.no_grad():
        wrong = m(best).argmax(1) != y
    unchanged = (best == x).flatten(1).all(1)
    assert torch.all(wrong | unchanged)  # a misclassified iterate, or the clean image


# ---- minimal-distance attack (Algorithm 1) ----------------------------------------------------------------
@pytest.mark.parametrize("rule", ["ramp", "sgd"])
@pytest.mark.parametrize("goal", ["adv", "btr"])
def test_minimal_distance_linear_model(rule, goal):
    """Binary linear model: the minimal RMSE to the boundary is |w·x + b| / ‖w‖₂ / √N (btr = adv for V = 2)."""
    torch.manual_seed(0)
    n_el = 64
    w = torch.randn(n_el)
    u = w / w.norm()
    r = torch.tensor([0.02, 0.03, 0.05, 0.07, 0.025, 0.04])  # RMSE distances, the scale of robust CIFAR nets
    side = torch.tensor([1.0, -1, 1, -1, -1, 1])
    noise = 0.05 * torch.randn(6, n_el)
    noise -= (noise @ u)[:, None] * u  # parallel to the boundary
    x = (0.5 + noise + (side * r * math.sqrt(n_el))[:, None] * u).view(6, 1, 8, 8)
    model = Linear2(w, -0.5 * w.sum())  # boundary through the grey image
    y = (side > 0).long()
    analytic = r
    res = minimal_distance(model, x, y, goal, steps=450, rule=rule)
    assert torch.all(res.first_success >= 0)
    # rtol 2 %: the attack's own accuracy (a finite step schedule lands near, not on, the boundary), not rounding
    assert torch.allclose(res.rmse, analytic, rtol=0.02)
    # 1e-4 relative: the float32 logit w·x + b (64 terms ~1) rounds by ~1e-6, i.e. ~1e-7 in RMSE distance,
    # ~5e-6 of r >= 0.02
    assert torch.all(res.rmse >= analytic * (1 - 1e-4))  # success is never inside the boundary


def test_minimal_distance_misclassified_is_zero():
    model = Linear2(torch.ones(4))
    x = torch.full((2, 4), 0.5)
    res = minimal_distance(model, x, torch.tensor([0, 1]), "adv", steps=20)  # class 1 predicted
    assert res.rmse[0] == 0 and res.rmse[1] > 0


# ---- explanations ------------------------------------------------------------------------------------------------
def test_explain_raises_target_probability_within_rho():
    m, x, y = _model(n=4)
    with torch.no_grad():
        second = runner_up(m(x), y)
    ex = explain(m, x, second, rho=0.05, steps=20, clip_result=False)
    with torch.no_grad():
        p0 = m(x).softmax(1).gather(1, second[:, None])
        p1 = m(ex).softmax(1).gather(1, second[:, None])
    assert torch.all(p1 > p0)
    assert float(rmse(ex - x).max()) <= 0.05 * 1.2
    neg = explain(m, x, y, rho=0.05, steps=20, positive=False)
    with torch.no_grad():
        assert torch.all(m(neg).softmax(1).gather(1, y[:, None]) < m(x).softmax(1).gather(1, y[:, None]))
    fig = explanation_figure(m, x[:2], y[:2], rho=0.05, steps=5)
    assert len(fig.axes) == 10


# ---- generators (the contract other regimes use) ---------------------------------------------------------------
@pytest.mark.parametrize("kind", GENERATORS.names())
def test_every_generator_runs(kind):
    m, x, y = _model(n=8)
    m.train()
    out = make_adversarial(kind, m, x, y)
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    assert all(p.requires_grad and p.grad is None for p in m.parameters())
    half = make_adversarial(kind, m, x, y, half=True, half_exact=True)
    assert int((half != x).flatten(1).any(1).sum()) <= 4  # the other half stays clean


def test_generator_params_validate():
    with pytest.raises(ValueError, match="unknown adversarial generator 'nope'; valid: fgsm"):
        validate_generator("nope")
    with pytest.raises(ValueError, match="pgd.stepz"):
        validate_generator("pgd", {"stepz": 3})
    with pytest.raises(ValueError, match="eps"):
        build_generator("fgsm", {"eps": -1})
    with pytest.raises(ValueError, match="inner"):
        validate_generator("half_half", {"inner": "nope"})
    assert build_generator("half_half", {"eps": 0.05}).inner.params.eps == 0.05


# ---- the evaluation's fast victim ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_inference_copy_same_function(name):
    from trainables.models.inference import inference_copy

    m, x, y = _model(name, n=8)
    # float64: folding is exact in real arithmetic, and FGSM's sign is discontinuous where a gradient entry
    # is ~0 (in float32 a pooling / ReLU near-tie can also move a whole gradient entry)
    m, x = m.double(), x.double()
    f = inference_copy(m)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in f.modules())  # folded into the convs
    assert all(p.requires_grad for p in m.parameters()) and not any(p.requires_grad for p in f.parameters())
    with torch.no_grad():
        lf, lm = f(x), m(x)
    # measured 2e-15 relative (AVX2); 1e-10 leaves margin for other kernels, 1e4 x below float32 (1e-6)
    assert lf.dtype == torch.float64 and float((lf - lm).abs().max()) <= 1e-10 * float(lm.abs().max())
    ours, ref = fgsm(f, x, y, 8 / 255), fgsm(m, x, y, 8 / 255)
    assert (ours != ref).float().mean() < 1e-3  # sign flips only where the gradient is ~0 (none measured)
    with pytest.raises(ValueError, match="eval-mode"):
        inference_copy(m.train())


def test_attack_victims():
    """``evaluation.robust.victim``: ``model`` is the model itself; ``folded`` (default) a frozen BN-folded copy
    with no CPU-specific layer on the CPU; ``cpu_plan`` the opt-in per-layer plan."""
    from trainables.models.cpu_plan import ChannelsLastMaxPool2d, PlannedConv2d
    from trainables.models.inference import attack_victim, auto_layout

    m, x, _ = _model("resnet18", n=4)
    assert attack_victim(m, "model") is m
    folded, planned = attack_victim(m, "folded"), attack_victim(m, "cpu_plan")
    special = (PlannedConv2d, ChannelsLastMaxPool2d)
    assert auto_layout(m) == "keep" and not any(isinstance(mod, special) for mod in folded.modules())
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in folded.modules())
    assert any(isinstance(mod, PlannedConv2d) for mod in planned.modules())
    with torch.no_grad():  # float32 logits ~1..10 through ~20 folded layers: rounding ~1e-6; 1e-4 = 100x margin
        for v in (folded, planned):
            assert torch.allclose(v(x), m(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [
    # H, W, C, O, kernel, stride, padding: resnet's stem, odd sizes, non-square stride, s = k, 1×1, padding > k/2
    (64, 64, 3, 8, (7, 7), (2, 2), (3, 3)), (65, 63, 3, 8, (7, 5), (2, 3), (3, 1)),
    (32, 32, 1, 4, (4, 4), (4, 4), (0, 0)), (17, 17, 3, 5, (3, 3), (2, 2), (0, 0)),
    (16, 16, 2, 4, (1, 1), (2, 2), (0, 0)), (20, 20, 3, 4, (3, 3), (2, 2), (4, 4)),
])
def test_subpixel_input_grad_equals_aten(shape):
    """The strided conv's input gradient as one stride-1 conv + pixel shuffle == ATen's backward-data (float64)."""
    from trainables.models.subpixel import subpixel_input_grad, subpixel_kernel

    h, w, c, o, k, s, p = shape
    g0 = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, h, w, dtype=torch.float64, generator=g0)
    wt = torch.randn(o, c, *k, dtype=torch.float64, generator=g0)
    g = torch.randn_like(F.conv2d(x, wt, None, s, p))
    ref = torch.ops.aten.convolution_backward(g, x, wt, None, list(s), list(p), [1, 1], False, [0, 0], 1,
                                              [True, False, False])[0]
    ours = subpixel_input_grad(g, *subpixel_kernel(wt, s, p), (h, w))
    # float64 sums of <= 8·49 products of N(0, 1) values (|sum| ~ 20): rounding ~sqrt(400) x 1e-16 x 20 = 4e-14,
    # so atol 1e-12 is a float64 equality with margin
    assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", [
    # C, O, H, W, kernel, stride, padding, dilation, bias -> the plan PlannedConv2d must pick
    (8, 6, 2, 2, 3, 1, 1, 1, True, "dense"), (8, 6, 1, 1, 3, 1, 1, 1, False, "dense"),
    (4, 5, 3, 3, 3, 1, 0, 1, True, "dense"), (4, 5, 3, 2, 3, 1, 1, 1, True, "direct"),
    (4, 5, 2, 2, 1, 1, 0, 1, True, "direct"), (4, 5, 4, 4, 3, 1, 2, 2, True, "direct"),
    (4, 5, 9, 9, 3, 1, 1, 1, True, "direct"), (3, 5, 16, 16, 3, 2, 1, 1, True, "subpixel"),
])
def test_planned_conv_same_function_and_input_grad(case):
    """Every CPU plan (dense matrix, direct NCHW / channels_last, subpixel backward) == nn.Conv2d (float64)."""
    from trainables.models.cpu_plan import PlannedConv2d

    *geom, bias, plan = case
    c, o, h, w, k, s, p, d = geom
    torch.manual_seed(0)
    conv = nn.Conv2d(c, o, k, s, p, d, bias=bias).double().requires_grad_(False)
    ours = PlannedConv2d.from_conv(copy.deepcopy(conv))
    x = torch.randn(3, c, h, w, dtype=torch.float64, requires_grad=True)
    y, ref = ours(x), conv(x)
    g = torch.randn_like(ref)
    assert ours._plan(x)[0] == plan
    # float64, sums of <= 8·9 N(0, 1) products: rounding ~1e-15, atol 1e-12 is a float64 equality with margin
    assert torch.allclose(y, ref, atol=1e-12, rtol=0)
    assert torch.allclose(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0], atol=1e-12, rtol=0)


def test_cpu_plan_resnet_pgd_matches_torchattacks():
    """resnet18 (stem subpixel, channels_last layer1-2, NCHW layer3, dense layer4 at 64 px): the CPU-planned copy
    gives the model's logits and input gradients to float rounding, and PGD-10 on it the same robust accuracy
    as torchattacks on the model itself."""
    import torchattacks as ta

    from trainables.models.cpu_plan import ChannelsLastMaxPool2d, PlannedConv2d
    from trainables.models.inference import inference_copy

    m, x, y = _model("resnet18", size=64, n=16)
    f = inference_copy(m, "cpu")  # the opt-in CPU plan
    assert isinstance(f.net.maxpool, ChannelsLastMaxPool2d) and isinstance(f.net.conv1, PlannedConv2d)
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (gm,) = torch.autograd.grad(F.cross_entropy(m(xg), y), xg)
        (gf,) = torch.autograd.grad(F.cross_entropy(f(xg), y), xg)
    kinds = {mod._plans and next(iter(mod._plans.values()))[0] for mod in f.modules() if isinstance(mod, PlannedConv2d)}
    assert kinds == {"dense", "direct", "subpixel"}
    with torch.no_grad():  # float32 logits ~1..10 through ~20 folded layers: rounding ~1e-6; 1e-4 = 100x margin
        assert torch.allclose(f(x), m(x), atol=1e-4, rtol=1e-4)
    # input gradients are compared in float64 (test_cpu_plan_other_families_same_function_and_grad[resnet18]):
    # in float32 they are discontinuous at max-pool near-ties, so no float32 tolerance is sound for them
    assert gf.shape == gm.shape and bool(torch.isfinite(gf).all())
    eps = 1 / 255  # 4 of the 16 images survive: a non-trivial robust accuracy
    ours = pgd(f, x, y, eps, steps=10, alpha=eps / 4)
    ref = ta.PGD(m, eps=eps, alpha=eps / 4, steps=10, random_start=False)(x, y)
    with torch.no_grad():
        robust_ours, robust_ref = int((m(ours).argmax(1) == y).sum()), int((m(ref).argmax(1) == y).sum())
    assert 0 < robust_ref < len(y)
    # equal here (the images agree to the bit on this machine, AVX2); a CPU
    # with other SIMD kernels rounds differently and a ReLU switch may move one image. Float32 on purpose (a
    # float64 PGD-10 of resnet18 at 64 px takes minutes on CPU; the plan's exactness is checked in float64 by
    # test_cpu_plan_other_families_same_function_and_grad): the bounds are statistical — a sign flip where a
    # gradient entry is within rounding of 0 moves that pixel by <= 2α, and < 1 % of pixels may do so
    assert abs(robust_ours - robust_ref) <= 1
    assert float(((ours - ref).abs() > 1e-6).float().mean()) < 0.01


def test_channels_last_max_pool_same_values_and_grad():
    from trainables.models.cpu_plan import ChannelsLastMaxPool2d

    pool = nn.MaxPool2d(3, 2, 1)
    ours = ChannelsLastMaxPool2d.from_pool(pool)
    x = torch.relu(torch.randn(2, 4, 9, 9)).requires_grad_(True)
    y, ref = ours(x), pool(x)
    assert torch.equal(y, ref)
    g = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0])


def test_planned_conv_refuses_double_backward():
    """The dense / subpixel plans give first-order input gradients only: a double backward raises (never a
    silently wrong second-order gradient)."""
    from trainables.models.cpu_plan import PlannedConv2d

    conv = PlannedConv2d.from_conv(nn.Conv2d(4, 4, 3, padding=1)).requires_grad_(False)
    x = torch.randn(2, 4, 2, 2, requires_grad=True)
    assert conv._plan(x)[0] == "dense"
    (g,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|not have been used in the graph"):
        torch.autograd.grad(g.sum(), x)


def test_pool_before_relu_same_values_and_grad():
    """maxpool(relu(x)) -> relu(maxpool(x)): bit-identical output and input gradient (incl. all-negative windows);
    a ReLU whose output is used elsewhere too is left alone."""
    import torch.fx

    from trainables.models.cpu_plan import pool_before_relu

    class Stem(nn.Module):
        def __init__(self, reuse=False):
            super().__init__()
            self.act, self.pool, self.reuse = nn.ReLU(), nn.MaxPool2d(3, 2, 1), reuse

        def forward(self, x):
            h = self.act(x)
            return self.pool(h).sum() + (h.sum() if self.reuse else 0)

    x = torch.randn(2, 3, 9, 9)
    x[0, 0, :4, :4] = -1.0  # windows whose max is negative
    for reuse, rewritten in [(False, 1), (True, 0)]:
        ref, gm = Stem(reuse), torch.fx.symbolic_trace(Stem(reuse))
        assert pool_before_relu(gm) == rewritten
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = gm(xa), ref(xb)
        assert torch.equal(ya, yb)
        ya.backward(), yb.backward()
        assert torch.equal(xa.grad, xb.grad)


@pytest.mark.parametrize("name", ["efficientnet_b0", "convnext_atto", "densenet121", "vgg11", "mobilenetv3_small_100",
                                  "resnet18"])
def test_cpu_plan_other_families_same_function_and_grad(name):
    """Depthwise / grouped convs, 4×4 / 3×3 strided stems, dense blocks: the planned copy computes the model's
    function and input gradient for every backbone family the factory maps.

    The claim is exactness in real arithmetic, so it is checked in float64. In float32 the input gradient of a
    network with max pooling is not a continuous function of rounding: where two activations of a pooling window
    differ by less than float32's accumulated rounding (~1e-6 relative after a few convs), any change of
    summation order (oneDNN's AVX2 vs AVX-512 kernels, NCHW vs channels_last) can route that window's whole
    gradient to the other element. vgg11 at 64 px has such a window (0.3750416 vs 0.3750419 after 9 layers):
    on an AVX2 CPU the model's own float32 gradient then differs from its float64 gradient by 2.8 % of the
    largest gradient, while the planned copy agrees with float64 to 3e-9 — a near-tie, not a plan error."""
    from trainables.models.cpu_plan import PlannedConv2d
    from trainables.models.inference import inference_copy
    from trainables.models import build_classifier

    torch.manual_seed(0)
    m = build_classifier(name, 5).eval().double()
    f = inference_copy(m, "cpu")  # the opt-in CPU plan
    assert any(isinstance(mod, PlannedConv2d) for mod in f.modules())  # the CPU plan is what is checked
    x, y = torch.rand(2, 3, 64, 64, dtype=torch.float64, requires_grad=True), torch.tensor([0, 3])
    (gm,) = torch.autograd.grad(F.cross_entropy(m(x), y), x)
    (gf,) = torch.autograd.grad(F.cross_entropy(f(x), y), x)
    with torch.no_grad():
        lm, lf = m(x), f(x)
    # float64 (eps 1.1e-16): BN folding and reordered sums measured <= 4e-15 relative for every family here (AVX2);
    # 1e-10 leaves a wide margin for other kernels and is still ~1e4 x below float32 rounding of these nets
    assert float((lf - lm).abs().max()) <= 1e-10 * float(lm.abs().max())
    assert float((gf - gm).abs().max()) <= 1e-10 * float(gm.abs().max())
