"""Top-GAP: pooling values (ALGORITHMS.md §2.5), the FPN head on every family, the 8 ablations, CAM mode."""
import copy

import pytest
import torch
import torch.nn.functional as F

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.models import build_classifier, count_parameters
from trainables.models.topgap import TopGapClassifier, build_topgap, minmax_maps, parameter_counts
from trainables.models.topk_pool import PAPER_K_FRAC, TopKPool, resolve_k, topgap_pool
from trainables.regimes import build_regime
from trainables.regimes.topgap import cam_l1, topgap_loss

# ALGORITHMS.md §2.5: K = 2 classes, 3×3 maps
CAM = torch.tensor([[[1, -2, 3], [0.5, 4, -1], [2, 0, 6]],
                    [[-1, 0, 1], [2, -3, 0.5], [0, 1.5, -0.5]]]).unsqueeze(0)


@pytest.mark.parametrize("k, expected", [(1, (6, 2)), (2, (5, 1.75)), (3, (4.333333, 1.5)),
                                         (4, (3.75, 1.25)), (9, (1.5, 0.055556))])
def test_topgap_hand_values(k, expected):
    # hand-computed means of the top-k, printed to 6 decimals: atol 1e-6 (float32 rounding of <= 9 terms ~6e-7)
    torch.testing.assert_close(topgap_pool(CAM, k), torch.tensor([expected], dtype=torch.float32), atol=1e-6, rtol=0)


def test_k1_is_max_pool_and_k_all_is_mean():
    x = torch.randn(3, 5, 7, 6)
    # top-1 is a selection: exact. k = all is a mean of 42 N(0, 1) values in another order: float32 rounding
    # ~42 x 1.2e-7 x 3 / 42 ~ 4e-7, inside assert_close's float32 defaults (atol 1e-5, rtol 1.3e-6)
    torch.testing.assert_close(TopKPool(k=1)(x), F.adaptive_max_pool2d(x, 1).flatten(1), rtol=0, atol=0)
    torch.testing.assert_close(TopKPool(k=42)(x), x.mean((2, 3)))
    torch.testing.assert_close(TopKPool(k_frac=1.0)(x), x.mean((2, 3)))
    torch.testing.assert_close(topgap_pool(x, 5), topgap_pool(x[..., torch.randperm(6)], 5))  # permutation


def test_gradient_reaches_only_the_selected_pixels():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    topgap_pool(x, 4).sum().backward()
    flat, g = x.detach().flatten(2), x.grad.flatten(2)
    top = flat.topk(4, -1).indices
    expected = torch.zeros_like(g).scatter_(-1, top, 0.25)
    # 1/k = 0.25 is exact in float32 and a continuous randn draw has no ties at the k-th value: the float32
    # defaults only cover the sum over 4 of 0.25 below
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(g.sum(-1), torch.ones(2, 3))


def test_k_as_fraction_transfers_across_sizes():
    assert resolve_k(56 * 56, k_frac=PAPER_K_FRAC) == 256
    assert resolve_k(7 * 7, k_frac=PAPER_K_FRAC) == 4  # the paper's no-FPN ablation (Table 8)
    assert resolve_k(16, k_frac=1e-4) == 1
    with pytest.raises(ValueError, match="k=20"):
        resolve_k(16, k=20)
    with pytest.raises(ValueError, match="exactly one"):
        TopKPool(k=3, k_frac=0.5)


@pytest.mark.parametrize("k, y, ce", [(1, 0, 0.018150), (1, 1, 4.018150), (3, 0, 0.057152), (3, 1, 2.890485),
                                      (9, 0, 0.211781), (9, 1, 1.656225)])
def test_cross_entropy_of_topgap(k, y, ce):
    # hand-computed CE printed to 6 decimals; float32 log-sum-exp of logits <= 6 rounds by ~1e-6: abs 1e-5
    loss, _ = topgap_loss(topgap_pool(CAM, k), CAM, torch.tensor([y]), lam=0.0)
    assert loss.item() == pytest.approx(ce, abs=1e-5)


def test_l1_normalisation_and_total_loss():
    # hand-computed values printed to 6 decimals (abs 1e-6), and CE + λ·L1 sums of float32 terms up to 29
    # (ulp 1.9e-6): abs 1e-5
    assert cam_l1(CAM, "sum").item() == pytest.approx(29.0)
    assert cam_l1(CAM, "mean").item() == pytest.approx(1.611111, abs=1e-6)
    y = torch.tensor([0])
    assert topgap_loss(topgap_pool(CAM, 3), CAM, y, 1.0, "sum")[0].item() == pytest.approx(29.057152, abs=1e-5)
    assert topgap_loss(topgap_pool(CAM, 3), CAM, y, 1.0, "mean")[0].item() == pytest.approx(1.668263, abs=1e-5)


def test_minmax_hand_values():
    m = minmax_maps(CAM)[0]
    # hand-computed ratios (x - min) / (max - min) of small integers: float32 defaults cover one rounding each;
    # 0.611111 is printed to 6 decimals
    torch.testing.assert_close(m[0], torch.tensor([[.375, 0, .625], [.3125, .75, .125], [.5, .25, 1]]))
    torch.testing.assert_close(m[1], torch.tensor([[.4, .6, .8], [1, 0, .7], [.6, .9, .5]]))
    assert m[0].mean().item() == pytest.approx(0.4375) and m[1].mean().item() == pytest.approx(0.611111, abs=1e-6)


@pytest.mark.parametrize("backbone, cam_side", [("smallcnn", 32), ("resnet18", 16), ("efficientnet_b0", 16),
                                                ("densenet121", 16), ("vgg11_bn", 16)])
def test_head_builds_on_every_family(backbone, cam_side):
    model = build_topgap(build_classifier(backbone, 5), k_frac=0.1)
    assert isinstance(model, TopGapClassifier)
    x = torch.rand(2, 3, 64, 64)
    logits, cam = model.train()(x, with_cam=True)
    assert logits.shape == (2, 5) and cam.shape == (2, 5, cam_side, cam_side)
    (logits.sum() + cam.abs().mean()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # DDP needs every parameter used
    feats = {}
    model.target_layer.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    assert model.eval()(x).shape == (2, 5) and feats["a"].dim() == 4
    assert model.cam(x).shape == (2, 5, cam_side, cam_side)


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_composed_head_equals_the_plain_fpn(upsample):
    model = build_topgap(build_classifier("smallcnn", 4), k_frac=0.2, upsample=upsample).train()
    assert model.net.head.composed  # 4 classes < 256 filters
    plain = copy.deepcopy(model)
    plain.net.head.composed = False
    # float64: the composed head is the plain FPN in real arithmetic, and the parameter gradients pass through
    # top-k selection, ReLU and max pooling, which a float32 near-tie can switch under another summation order
    model, plain = model.double(), plain.double()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    outs = []
    for m in (model, plain):
        logits, cam = m(x, with_cam=True)
        (logits.square().sum() + cam.abs().mean()).backward()
        outs.append((cam.detach(), {n: p.grad for n, p in m.named_parameters()}))
    # measured <= 3e-15 relative to each tensor's largest entry (AVX2); 1e-10 leaves a wide margin for other
    # kernels and is ~1e4 x below float32 rounding (the float32 run differs by ~2e-6)
    assert float((outs[0][0] - outs[1][0]).abs().max()) <= 1e-10 * float(outs[1][0].abs().max())
    for n, g in outs[0][1].items():
        ref = outs[1][1][n]
        assert float((g - ref).abs().max()) <= 1e-10 * float(ref.abs().max()), n


@pytest.mark.parametrize("backbone", ["smallcnn", "resnet18", "efficientnet_b0"])
def test_no_fpn_gap_model_is_the_standard_model(backbone):
    torch.manual_seed(0)
    # float64: top-k over all pixels is GAP in real arithmetic; efficientnet_b0's initial logits are ~1e-4, so a
    # float32 atol would be no test at all. Measured <= 1.2e-15 relative to the largest logit (AVX2).
    std = build_classifier(backbone, 6).eval().double()
    ours = build_topgap(copy.deepcopy(std), fpn=False, k_frac=1.0).eval().double()  # its pool is new: cast too
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    a, b = ours(x), std(x)
    assert a.dtype == torch.float64 and float((a - b).abs().max()) <= 1e-10 * float(b.abs().max())
    assert count_parameters(ours) == count_parameters(std)


def _trial(params, backbone="smallcnn", size=32):
    return TrialConfig.parse({"dataset": {"name": "shapes", "image_size": size}, "model": {"backbone": backbone},
                              "regime": {"name": "topgap", "params": params}})


@pytest.mark.parametrize("fpn", [False, True])
@pytest.mark.parametrize("l1", [False, True])
@pytest.mark.parametrize("topgap", [False, True])
def test_all_eight_ablations_build_and_step(fpn, l1, topgap):
    cfg = _trial({"fpn": fpn, "l1": l1, "topgap": topgap})
    regime = build_regime(cfg)
    model = regime.build_model(build_classifier("smallcnn", 3)).train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    loss, logs = regime.loss(model, x, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert regime.cam_kind == "native" and set(logs) == {"train/acc", "train/ce", "train/cam_l1"}
    assert (loss.item() > logs["train/ce"].item()) == l1
    k = model.net.pool.resolved_k(*model.cam(x).shape[-2:])
    assert (k < model.cam(x)[0, 0].numel()) == topgap


def test_checkpoint_round_trip():
    cfg = _trial({"k": 5})
    a = build_regime(cfg).build_model(build_classifier("smallcnn", 3)).eval()
    b = build_regime(cfg).build_model(build_classifier("smallcnn", 3)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x))  # the same weights and float32 ops: the defaults only cover kernel choice
    assert a.net.pool.resolved_k(16, 16) == 5


def test_pixel_count_k_is_checked_against_the_cam():
    cfg = _trial({"k": 10_000})
    with pytest.raises(ConfigError, match="regime.params.k"):
        build_regime(cfg).build_model(build_classifier("smallcnn", 3))


def test_cam_mode_scales_to_unit_range_with_bn_frozen():
    model = build_topgap(build_classifier("smallcnn", 3, drop_rate=0.5), k_frac=0.1, drop_rate=0.5).train()
    bn = model.net.body.net.stages[0][1]
    before = bn.running_mean.clone()
    x = torch.rand(2, 3, 32, 32)
    cam = model.scaled_cam(x)
    assert model.training and torch.equal(bn.running_mean, before)  # BN frozen, mode restored
    assert cam.shape == (2, 3, 16, 16) and cam.min() >= 0 and cam.max() <= 1
    # (x - min) / (max - min) is exactly 1 at the max and 0 at the min in IEEE arithmetic; defaults are ample
    torch.testing.assert_close(cam.flatten(2).amax(-1), torch.ones(2, 3))
    torch.testing.assert_close(cam.flatten(2).amin(-1), torch.zeros(2, 3))
    torch.testing.assert_close(cam, model.scaled_cam(x))  # dropout off


def test_native_cam_helper_reads_the_head():
    from trainables.explain.base import CAM_METHODS

    model = build_topgap(build_classifier("smallcnn", 3), k_frac=0.1).eval()
    out = CAM_METHODS.get("native")()(model, torch.rand(2, 3, 32, 32))
    assert out.cam.shape == (2, 32, 32) and 0 <= out.cam.min() and out.cam.max() <= 1


@pytest.mark.parametrize("adv, rows", [("fgsm", 8), ("pgd", 4)])
def test_adversarial_composition(adv, rows):
    regime = build_regime(_trial({"adv": adv, "adv_eps": 0.03, "adv_params": {"steps": 2} if adv == "pgd" else {}}))
    model = regime.build_model(build_classifier("smallcnn", 3)).train()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    loss, _ = regime.loss(model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and seen[-1] == rows  # fgsm: [clean; adversarial], pgd: adversarial only
    with pytest.raises(ConfigError, match="steps"):
        _trial({"adv": "fgsm", "adv_params": {"steps": 3}})


def test_parameter_counts_follow_table1():
    rows = {(r["backbone"], r["num_classes"]): r for r in parameter_counts()}
    vgg, en53, dense = rows["vgg11_bn", 1000], rows["efficientnet_b0", 53], rows["densenet121", 1000]
    assert vgg["topgap"] == 12_432_872 and vgg["unmodified"] == 132_868_840  # Table 1: 12.43 M vs 132.87 M
    assert en53["topgap"] == 4_752_817 and en53["unmodified"] == 4_075_441  # Table 1: 4.75 M vs 4.08 M
    assert 1.0 < dense["ratio"] < 1.1  # Table 1: 7.98 M -> 8.03 M ("grows slightly"); ours 8.65 M
