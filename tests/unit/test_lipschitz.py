"""Lipschitz regime (ALGORITHMS.md §5): HHReLU, L_adv (eq. 9), adaptive ψ (eq. 15), output zeroing, surgery."""
import io
import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.models import build_classifier
from trainables.models.hhrelu import HHReLU, avgpool_stem, hhrelu, swap_relu
from trainables.regimes import REGIMES
from trainables.regimes._lipschitz_control import AdaptivePsi
from trainables.regimes._lipschitz_terms import (gradient_penalty, k_out_guideline, l_adv, output_zeroing,
                                                 select_outputs, selected_scalars)

# ---- HHReLU (eq. 11) ------------------------------------------------------------------------------------
X = [-1, -0.1, 0, 0.1, 0.25, 0.4, 0.5, 0.75, 1, 2]
TABLE = {  # ALGORITHMS.md §5.6: d -> rows of (f, f', f'') at X
    1: [(0, 0, 0)] * 3 + [(0.01, 0.2, 2), (0.0625, 0.5, 2), (0.16, 0.8, 2), (0.25, 1, 0), (0.5, 1, 0),
                          (0.75, 1, 0), (1.75, 1, 0)],
    2: [(0, 0, 0)] * 3 + [(0.02, 0.4, 4), (0.125, 1, 0), (0.275, 1, 0), (0.375, 1, 0), (0.625, 1, 0),
                          (0.875, 1, 0), (1.875, 1, 0)],
    0.5: [(0, 0, 0)] * 3 + [(0.005, 0.1, 1), (0.03125, 0.25, 1), (0.08, 0.4, 1), (0.125, 0.5, 1),
                            (0.28125, 0.75, 1), (0.5, 1, 0), (1.5, 1, 0)],
}


def _derivs(x: torch.Tensor, d: float):
    x = x.clone().requires_grad_(True)
    f = hhrelu(x, d)
    (g,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    return f.detach(), g.detach(), h


@pytest.mark.parametrize("d", [1, 2, 0.5])
def test_hhrelu_table(d):
    f, g, h = _derivs(torch.tensor(X, dtype=torch.float64), d)
    expected = torch.tensor(TABLE[d], dtype=torch.float64)
    # float64 against exact decimal values: the float64 defaults (rtol 1e-7, atol 1e-7) cover only their
    # binary rounding (1e-17) and one or two float64 ops
    torch.testing.assert_close(f, expected[:, 0])
    torch.testing.assert_close(g, expected[:, 1])
    torch.testing.assert_close(h, expected[:, 2])


@pytest.mark.parametrize("d", [1, 2, 0.5, 3.7])
def test_hhrelu_value_and_derivative_continuous_at_knots(d):
    # finite differences in float64: truncation <= |f''| h / 2 = d h, rounding ~1e-16 / h = 1e-10 << d h;
    # 10 d h covers both with margin, and a kink (a jump of f' by O(1)) would exceed it by 1e5
    h = 1e-6
    for x0 in (0.0, 1 / (2 * d)):
        xs = torch.tensor([x0 - 2 * h, x0 - h, x0, x0 + h, x0 + 2 * h], dtype=torch.float64)
        f, g, _ = _derivs(xs, d)
        left, right = (f[2] - f[1]) / h, (f[3] - f[2]) / h  # one-sided finite differences
        assert abs(float(left - right)) < 10 * d * h  # no kink: both sides agree to O(h)
        assert abs(float(left - g[2])) < 10 * d * h and abs(float(right - g[2])) < 10 * d * h
        assert abs(float(g[1] - g[3])) < 10 * d * h  # f' continuous across the knot
        assert abs(float(f[1] - f[3])) < 10 * h


def test_hhrelu_is_shifted_relu_above_knee_and_module_matches_functional():
    d = 2.0
    x = torch.linspace(0.25, 5, 50)
    torch.testing.assert_close(HHReLU(d)(x), torch.relu(x) - 1 / (4 * d))  # one float32 op: the defaults
    assert "d=2" in repr(HHReLU(d))
    with pytest.raises(ValueError):
        HHReLU(0)


def test_hhrelu_double_backprop_gradcheck():
    x = (torch.randn(20, dtype=torch.float64) * 0.6).requires_grad_(True)  # avoids the knots a.s.
    assert torch.autograd.gradcheck(lambda t: hhrelu(t, 1.0), (x,))
    assert torch.autograd.gradgradcheck(lambda t: hhrelu(t, 1.0), (x,))


def test_hhrelu_survives_fx_tracing_and_bn_folding():
    """FX records hhrelu as one call (the evaluation's BN-folded copy traces models with torch.fx)."""
    from torch.fx.experimental.optimization import fuse

    model = build_classifier("smallcnn", num_classes=3)
    swap_relu(model)
    model.eval().double()  # folding is exact in real arithmetic: compared in float64
    traced = torch.fx.symbolic_trace(model)
    assert sum(n.target is hhrelu for n in traced.graph.nodes) == 8
    folded = fuse(model).requires_grad_(False)
    x = torch.rand(2, 3, 16, 16, requires_grad=True, dtype=torch.float64)
    (g_ref,) = torch.autograd.grad(model(x).sum(), x)
    (g_fold,) = torch.autograd.grad(folded(x).sum(), x)
    # measured 3e-14 relative to the largest entry (AVX2); 1e-10 leaves margin for other kernels, ~1e3 x below
    # float32 rounding
    assert g_fold.dtype == torch.float64
    assert float((g_fold - g_ref).abs().max()) <= 1e-10 * float(g_ref.abs().max())


# ---- surgery --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone,expected", [("resnet18", 17), ("smallcnn", 8), ("densenet121", 121)])
def test_swap_relu_replaces_every_relu(backbone, expected):
    model = build_classifier(backbone, num_classes=4)
    assert swap_relu(model, d=1.0) == expected
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, HHReLU) for m in model.modules()) == expected
    out = model.eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_swap_relu_warns_without_relu():
    with pytest.warns(UserWarning, match="no nn.ReLU"):
        assert swap_relu(nn.Sequential(nn.Linear(2, 2), nn.GELU())) == 0


def test_avgpool_stem():
    model = build_classifier("resnet18", num_classes=3)
    assert avgpool_stem(model.net) == "maxpool"
    pool = model.net.maxpool
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 3 and pool.stride == 2 and pool.padding == 1
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)
    with pytest.warns(UserWarning):
        assert avgpool_stem(build_classifier("smallcnn", num_classes=3)) is None


# ---- L_adv terms (eq. 9) --------------------------------------------------------------------------------
G = torch.tensor([[[0.1, -0.2, 0, 0.3], [0.5, 0, -0.1, 0]]])  # [K=1, B=2, N=4], ALGORITHMS.md §5.6 toy


@pytest.mark.parametrize("kw,expected", [
    ({"psi": 220, "z": 1}, 33.0), ({"psi": 220, "z": 2}, 11.0), ({"psi": 220, "z": 3}, 4.455),
    ({"psi": 1, "z": 2, "q": 1}, 0.03), ({"psi": 1, "z": 0, "q": 1}, 0.6),
    ({"psi": 1, "z": 2, "sigma": 0.15}, 0.0184375),
])
def test_gradient_penalty_toy_values(kw, expected):
    # hand-computed exact decimals; float32 sums of <= 8 terms of size <= 33: rel 1e-6 ~ 8 ulps
    assert float(gradient_penalty(G, **kw)) == pytest.approx(expected, rel=1e-6)


def test_tandem_scalar_and_true_label():
    logits = torch.tensor([[2.0, 5.0, 1.0, 4.5]])
    y, idx, use = torch.tensor([1]), torch.tensor([[2]]), torch.tensor([[True]])
    # differences of float32 logits that are exact in binary (0.5, 9.5): approx's defaults are ample
    assert float(selected_scalars(logits, y, idx, use, "tandem")) == pytest.approx(0.5)
    assert float(selected_scalars(logits, y, idx, use, "tandem_sum")) == pytest.approx(9.5)
    assert float(selected_scalars(logits, y, idx, use, "true")) == 5.0
    assert float(selected_scalars(logits, y, idx, ~use, "tandem")) == 1.0


def test_select_outputs_without_replacement():
    idx = select_outputs(200, 6, 4)
    assert idx.shape == (200, 4) and idx.min() >= 0 and idx.max() < 6
    assert all(len(set(row)) == 4 for row in idx.tolist())
    assert set(select_outputs(300, 6, 1).flatten().tolist()) == set(range(6))  # every output drawn
    with pytest.raises(ValueError):
        select_outputs(2, 3, 4)


class _Tiny(nn.Module):
    """Per-sample model (no batch coupling): conv -> HHReLU -> linear, 5 outputs."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(2, 3, 3, padding=1), HHReLU(1.0), nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


@pytest.mark.parametrize("kw", [dict(z=2.0), dict(z=1.0), dict(z=3.0, q=1.0), dict(z=2.0, sigma=0.01),
                                dict(z=2.0, zeta_mode="tandem"), dict(z=2.0, zeta_mode="true")])
def test_l_adv_equals_bruteforce_jacobian(kw):
    torch.manual_seed(1)
    model = _Tiny().double()
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 4])
    idx = torch.tensor([[1, 4], [0, 3], [2, 1]])
    use = torch.tensor([[True, False], [False, False], [False, True]]) if "zeta_mode" in kw else None
    psi = 7.0
    got = l_adv(model(x), x, y, psi, k=2, idx=idx, use_label=use, **kw)

    logits = model(x).detach()
    jac = torch.autograd.functional.jacobian(model, x.detach())  # [B, V, B, C, H, W]
    z, q, sigma = kw.get("z", 2.0), kw.get("q", 0.0), kw.get("sigma", 0.0)
    total = 0.0
    for b in range(3):
        for k in range(2):
            if use is not None and use[b, k]:
                t = int(y[b])
                if kw["zeta_mode"] == "true":
                    g = jac[b, t, b]
                else:
                    others = logits[b].clone()
                    others[t] = -math.inf
                    g = jac[b, t, b] - jac[b, int(others.argmax()), b]
            else:
                g = jac[b, int(idx[b, k]), b]
            a = (g.abs() - sigma).clamp(min=0).flatten()
            total += float(a.sum() ** q * (a ** z).sum())
    expected = psi / (2 * x[0].numel()) * total / 3
    # float64 on both sides (double backprop vs a brute-force Jacobian), sums of <= 32 terms: rounding ~1e-15
    # relative; rel 1e-9 is still ~1e2 x below float32's eps, so a float32 step anywhere would fail it
    assert float(got.detach()) == pytest.approx(expected, rel=1e-9)


def test_l_adv_is_differentiable_w_r_t_parameters():
    model = _Tiny()
    x = torch.rand(4, 2, 4, 4, requires_grad=True)
    l_adv(model(x), x, torch.tensor([0, 1, 2, 3]), 10.0, zeta=0.5).backward()
    assert model.conv.weight.grad is not None and model.conv.weight.grad.abs().sum() > 0


def test_output_zeroing_and_guideline():
    logits = torch.tensor([[1.0, 2.0], [0.0, -3.0]])
    # hand values: exact decimals (approx default rel 1e-6 over float32 ops) and 4 significant digits (abs=)
    assert float(output_zeroing(logits, 0.1)) == pytest.approx(0.1 * (5 + 9) / 2)
    assert k_out_guideline(10) == pytest.approx(0.009966, abs=1e-6)
    assert k_out_guideline(80) == pytest.approx(0.001034, abs=1e-6)
    assert k_out_guideline(1000) == pytest.approx(6.005e-5, abs=1e-8)
    with pytest.raises(ValueError):
        k_out_guideline(10, s_t=0.05)


# ---- adaptive ψ (eq. 15) --------------------------------------------------------------------------------
def test_controller_reproduces_hand_sequence():
    c = AdaptivePsi(1.5, k_psi0=220, k_psi=0.02, eps_better=1, eps_worse=0.01)
    losses = [2.3, 2.0, 1.4, 1.2, 1.0, 0.5, 0.2, 1.6, 3.0, 3.0]
    integral = [0, 0, 0.068993, 0.292136, 0.697602, 1.697602, 2.697602, 2.687602, 2.677602, 2.667602]
    psi = [220, 220, 220.303778, 221.289163, 223.090959, 227.597695, 232.195474, 232.149039, 232.102614,
           232.056198]
    # hand sequence printed to 6 decimals (integral, ψ): abs 1e-6; the controller runs in float64
    for loss, i_b, psi_b in zip(losses, integral, psi):
        out = c.update(torch.tensor(loss))
        assert float(c.integral) == pytest.approx(i_b, abs=1e-6)
        assert c.psi == pytest.approx(psi_b, abs=1e-6)
        assert float(out) == pytest.approx(psi_b, rel=1e-6)


def test_controller_early_setting_and_bounds():
    c = AdaptivePsi(1.007, k_psi0=0.01, k_psi=0.02, eps_better=1, eps_worse=1)
    seq = [(2.3, 0, 0.01), (1.2, 0, 0.01), (1.0, 0.006976, 0.0100014), (0.5, 0.707098, 0.0101424), (3.0, 0, 0.01)]
    for loss, i_b, psi_b in seq:  # printed to 6 decimals / 6 significant digits (ψ ~ 0.01: abs 1e-7)
        c.update(torch.tensor(loss))
        assert float(c.integral) == pytest.approx(i_b, abs=1e-6)
        assert c.psi == pytest.approx(psi_b, abs=1e-7)
    c, prev = AdaptivePsi(1.0), 220.0
    for loss in torch.rand(200) * 3:
        c.update(loss)
        step = math.log(c.psi / prev)
        # the bounds are exact by construction; 1e-12 covers float64 exp / log round trip of ψ ~ 220 (~1e-16)
        assert c.psi >= 220.0 and -0.02 * 0.01 - 1e-12 <= step <= 0.02 * 1 + 1e-12
        prev = c.psi


# ---- the regime -----------------------------------------------------------------------------------------
def _regime(**params):
    return REGIMES.get("lipschitz")(params)


def _step(regime, model, batch=6, size=16):
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 4, (batch,))
    model.zero_grad()
    loss, logs = regime.loss(model, x, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    return loss, logs


def test_regime_builds_and_steps_with_k1():
    regime = _regime(k=1)
    model = regime.build_model(build_classifier("smallcnn", num_classes=4)).train()
    assert sum(isinstance(m, HHReLU) for m in model.modules()) == 8
    loss, logs = _step(regime, model)
    assert {"train/acc", "train/ce", "train/l_adv"} <= set(logs)
    assert float(logs["train/l_adv"]) > 0
    # float32 loss = ce + l_adv (+ terms that are 0 here) summed in another order: a few ulps; rel 1e-5 margin
    assert float(loss) == pytest.approx(float(logs["train/ce"] + logs["train/l_adv"]), rel=1e-5)
    assert set(regime.epoch_logs()) == {"train/psi"}


def test_regime_variants_step():
    regime = _regime(l_target=None, psi=3.0, k=2, z=1, q=1, sigma=1e-4, zeta=1.0, zeta_mode="true",
                     k_out="guideline", stem_pool="avg", activation="relu")
    model = regime.build_model(build_classifier("resnet18", num_classes=4)).train()
    assert regime.k_out == pytest.approx(k_out_guideline(4))  # the same float64 formula: default rel 1e-6
    assert isinstance(model.net.maxpool, nn.AvgPool2d) and any(isinstance(m, nn.ReLU) for m in model.modules())
    _, logs = _step(regime, model, batch=4, size=32)
    assert "train/l_out" in logs and regime.epoch_logs() == {"train/psi": 3.0}


def test_psi_zero_is_plain_cross_entropy():
    regime = _regime(l_target=None, psi=0.0)
    model = regime.build_model(build_classifier("smallcnn", num_classes=4)).train()
    loss, logs = _step(regime, model, size=8)
    # ψ = 0: loss = ce + 0 (+ 0 output terms), equal up to an ulp: approx's default rel 1e-6
    assert float(logs["train/l_adv"]) == 0 and float(loss) == pytest.approx(float(logs["train/ce"]))


def test_resume_keeps_psi():
    regime = _regime(l_target=5.0)  # CE of 4 classes (~1.4) is below target: ψ grows every batch
    model = regime.build_model(build_classifier("smallcnn", num_classes=4)).train()
    for _ in range(2):
        _step(regime, model, size=8)
    assert regime.psi > 220
    buf = io.BytesIO()
    torch.save({"regime": regime.state_dict()}, buf)  # what loop.save_state stores
    buf.seek(0)
    resumed = _regime(l_target=5.0)
    resumed.load_state_dict(torch.load(buf, weights_only=False)["regime"])
    assert resumed.psi == pytest.approx(regime.psi, rel=1e-12)  # a float64 saved and loaded: exact, 1e-12 spare
    assert resumed.epoch_logs() == regime.epoch_logs()


@pytest.mark.parametrize("params", [{"at": "l2min", "at_eps": 0.1}, {"at": "l2", "at_half": False},
                                    {"at": "pgd", "at_eps": 4 / 255, "at_params": {"steps": 2}}])
def test_regime_with_adversarial_training(params):
    torch.manual_seed(0)
    regime = _regime(**params)
    model = regime.build_model(build_classifier("smallcnn", num_classes=4)).train()
    x = torch.rand(8, 3, 16, 16)  # >1 value per BN channel even under HHAT
    with torch.no_grad():
        y = model(x).argmax(1)  # correctly classified: a minimal (L2,min) attack must move them
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    loss, logs = regime.loss(model, x, y)
    hook.remove()
    assert torch.isfinite(loss) and regime.generator is not None
    trained_on = seen[-1]  # the training forward's input: the AT images, not the clean batch
    moved = (trained_on - x).flatten(1).abs().amax(1) > 1e-6
    assert moved.all() if params.get("at_half") is False else moved.any()
    with torch.no_grad():  # the perturbation is adversarial: it raises the loss of the moved images
        ce_adv = F.cross_entropy(model(trained_on[moved]), y[moved])
        ce_clean = F.cross_entropy(model(x[moved]), y[moved])
    assert ce_adv > ce_clean


def test_params_validation():
    base = {"dataset": {"name": "shapes"}, "regime": {"name": "lipschitz"}}
    for bad in ({"z": 0.5}, {"zeta": 1.5}, {"k": 0}, {"psi_": 1}, {"zeta_mode": "both"}, {"at": "nope"},
                {"at": "l2min", "at_params": {"stepz": 3}}, {"at": "l2min", "at_eps": -1}):
        with pytest.raises(ConfigError):
            TrialConfig.parse({**base, "regime": {"name": "lipschitz", "params": bad}})
    with pytest.raises(ConfigError, match="k: at most"):
        _regime(k=5).build_model(build_classifier("smallcnn", num_classes=4))
    cfg = TrialConfig.parse({**base, "regime": {"name": "lipschitz", "params": {"l_target": None, "psi": 12.0}}})
    assert cfg.regime.params["psi"] == 12.0


# ---- DDP ------------------------------------------------------------------------------------------------
def _ddp_batch():
    g = torch.Generator().manual_seed(3)
    return torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 2, 1, 2])


def _ddp_model_and_regime():
    """float64: the claim (DDP's averaged gradient = the single-process gradient) is exact in real arithmetic and
    only the summation order differs, so it is checked where rounding is ~1e-16, not at float32's ~1e-7."""
    torch.manual_seed(0)
    # K = V and ζ = 0 make L_adv deterministic; GroupNorm keeps images independent
    regime = _regime(l_target=None, psi=50.0, k=3, zeta=0.0)
    return regime.build_model(build_classifier("smallcnn_gn", num_classes=3)).train().double(), regime


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, regime = _ddp_model_and_regime()
        x, y = _ddp_batch()
        ddp = DDP(model)  # keep a reference: its reducer must outlive backward()
        loss, _ = regime.loss(ddp, x[2 * rank:2 * rank + 2], y[2 * rank:2 * rank + 2])
        loss.backward()
        adaptive = _regime(l_target=1.0)
        adaptive.controller.update(torch.tensor(0.5 + rank))  # different local losses
        psis = [None] * world
        dist.all_gather_object(psis, adaptive.psi)
        if rank == 0:
            torch.save({"grads": [p.grad for p in model.parameters()], "psis": psis}, out)
    finally:
        dist.destroy_process_group()


def test_ddp_double_backprop_matches_single_process(tmp_path):
    """2 gloo ranks x 2 images through the DDP-wrapped model = one process on the 4-image batch."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp.pt")
    # spawn, not fork: a forked child inherits torch's OpenMP pool state and can deadlock in gloo
    mp.start_processes(_ddp_worker, args=(2, port, out), nprocs=2, join=True, start_method="spawn")
    got = torch.load(out, weights_only=False)

    model, regime = _ddp_model_and_regime()
    x, y = _ddp_batch()
    regime.loss(model, x, y)[0].backward()
    for p, g in zip(model.parameters(), got["grads"]):
        # float64 double backprop over 4 images in another order: rounding ~1e-15 relative to |grad| ~1e-2..1
        torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)
    # adaptive ψ: ranks average L_b = (0.5 + 1.5) / 2 = 1.0 = L_target -> both stay at k_ψ0
    assert got["psis"] == [220.0, 220.0]
