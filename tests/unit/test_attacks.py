"""trainables.attacks: hand values (ALGORITHMS.md §1.5, §5.6), peers (torchattacks, foolbox), analytic limits."""
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
    assert torch.allclose(out, torch.tensor([[0.231373, 0.468627, 1.0, 0.0]]), atol=1e-6)


def test_ramp_schedules():
    """§5.6: L2,min ε = 0.1 step RMSEs and the ARA attack's first / second / last step (ε = 20, 450 steps)."""
    assert ramp_sizes(0.1, 7) == pytest.approx([0.025, 0.021429, 0.017857, 0.014286, 0.010714, 0.007143, 0.003571], abs=1e-6)
    s = ramp_sizes(20, 450)
    assert (s[0], s[1], s[-1]) == pytest.approx((0.088692, 0.088495, 0.000197), abs=1e-6)
    assert sum(s) == pytest.approx(20) and sum(ramp_sizes(0.01, 7)) == pytest.approx(0.01)


# ---- peers ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_fgsm_pgd_match_torchattacks(name):
    import torchattacks as ta
    m, x, y = _model(name, n=8)
    eps = 8 / 255
    pairs = [
        (fgsm(m, x, y, eps), ta.FGSM(m, eps=eps)(x, y)),
        (pgd(m, x, y, eps, steps=10, alpha=2 / 255), ta.PGD(m, eps=eps, alpha=2 / 255, steps=10, random_start=False)(x, y)),
        (pgd_l2(m, x, y, 0.5, steps=10, alpha=0.1), ta.PGDL2(m, eps=0.5, alpha=0.1, steps=10, random_start=False)(x, y)),
    ]
    for ours, peer in pairs:
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
    assert abs(acc_ours - acc_peer) <= 0.01
    assert float((ours - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5


# ---- properties ----------------------------------------------------------------------------------------------
def test_pgd_stays_in_ball_and_range():
    m, x, y = _model()
    for norm, eps in (("linf", 4 / 255), ("l2", 0.3)):
        adv = pgd(m, x, y, eps, steps=5, norm=norm, random_start=True)
        d = (adv - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
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
    assert b.dtype == torch.float32 and torch.allclose(a, b)
    pgd(m, x, y, 4 / 255, steps=2, bn="keep")  # train mode (the authors' choice): running stats move
    assert not torch.equal(before["net.stages.0.1.running_mean"], m.state_dict()["net.stages.0.1.running_mean"])


def test_l2_training_attacks():
    m, x, y = _model(n=8)
    adv = l2_ball(m, x, y, eps=0.05, steps=7)
    assert float(rmse(adv - x).max()) <= 0.05 + 1e-6
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
    assert torch.allclose(res.rmse, analytic, rtol=0.02)
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
    from trainables.attacks.fused import inference_copy

    m, x, y = _model(name, n=8)
    f = inference_copy(m)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in f.modules())  # folded into the convs
    assert all(p.requires_grad for p in m.parameters()) and not any(p.requires_grad for p in f.parameters())
    with torch.no_grad():
        assert torch.allclose(f(x), m(x), atol=1e-4, rtol=1e-4)
    ours, ref = fgsm(f, x, y, 8 / 255), fgsm(m, x, y, 8 / 255)
    assert (ours != ref).float().mean() < 1e-3  # sign flips only where the gradient is ~0
    with pytest.raises(ValueError, match="eval-mode"):
        inference_copy(m.train())
