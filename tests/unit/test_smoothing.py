"""SmoothBlock and its insertion (at-feature-map-smoothing eq. 16-17; ALGORITHMS.md §3.1, §3.6, §7)."""
import pytest
import torch
from kornia.filters import box_blur, gaussian_blur2d, median_blur

from trainables.config import RegimeConfig
from trainables.models import Classifier, build_classifier
from trainables.models.smoothing import SmoothBlock, gaussian_sigma, insert_smooth_block, opencv_sigma, stage_names
from trainables.regimes import REGIMES

FILTERS = ["gaussian", "mean", "median"]


def _h4() -> torch.Tensor:
    h = torch.zeros(1, 1, 4, 4)
    h[0, 0, 1, 1], h[0, 0, 3, 3] = 4.0, 8.0
    return h


@pytest.mark.parametrize("filter", FILTERS)
def test_zero_conv_is_identity(filter):
    block = SmoothBlock(5, filter, size=(9, 7), conv_init="zeros")
    x = torch.randn(2, 5, 9, 7)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)  # x + 0·smooth(x) + 0 is exact in any arithmetic


def test_filters_equal_kornia():
    """Float32 on purpose: both sides build their kernels in float32 (the block's kernel is a float32 buffer), so a
    float64 run would still compare float32-rounded weights (measured 1e-7 apart). Each output is a sum of 9 (25)
    products of N(0, 1) inputs with weights differing by ~1 ulp: ~sqrt(25) x 1.2e-7 x |x| ~ 1e-6, inside
    assert_close's float32 defaults (atol 1e-5 + rtol 1.3e-6); measured <= 3 % of them over 50 draws, on the
    AVX2 and SSE4.1 kernels alike. The median is a selection of an input value: compared exactly."""
    x = torch.randn(2, 4, 10, 14)
    g = SmoothBlock(4, "gaussian", size=(10, 14))
    torch.testing.assert_close(g.smooth(x), gaussian_blur2d(x, 3, (opencv_sigma(10), opencv_sigma(14))))
    torch.testing.assert_close(SmoothBlock(4, "mean", size=(10, 14)).smooth(x), box_blur(x, 3))
    torch.testing.assert_close(SmoothBlock(4, "median", size=(10, 14)).smooth(x),
                               median_blur(x, 3, border_type="constant"), rtol=0, atol=0)
    g5 = SmoothBlock(4, "gaussian", kernel_size=5, sigma=1.3, size=(10, 14))
    torch.testing.assert_close(g5.smooth(x), gaussian_blur2d(x, 5, (1.3, 1.3)))


def test_other_map_size_gets_its_own_sigma():
    block = SmoothBlock(2, "gaussian", size=(8, 8))
    x = torch.randn(1, 2, 16, 16)  # float32 defaults, as in test_filters_equal_kornia (9 terms, ~1-ulp weights)
    torch.testing.assert_close(block.smooth(x), gaussian_blur2d(x, 3, (opencv_sigma(16),) * 2))


@pytest.mark.parametrize("filter", FILTERS)
def test_gradients_flow(filter):
    block = SmoothBlock(3, filter, size=(6, 6))
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    block.smooth(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    block(x.detach()).sum().backward()
    assert block.conv.weight.grad.abs().sum() > 0


def test_kernel_is_a_buffer_not_a_parameter():
    block = SmoothBlock(3, "gaussian", size=(6, 6))
    assert "kernel" in dict(block.named_buffers())
    assert {n for n, _ in block.named_parameters()} == {"conv.weight", "conv.bias"}
    assert "kernel" in block.state_dict()
    assert "kernel" not in dict(SmoothBlock(3, "median").named_buffers())


def test_sigma_rules_and_kernels():
    """ALGORITHMS.md §3.6: σ from the feature-map size and the resulting 3×3 kernels. The expected values are
    hand-computed: σ to 2 decimals (approx's rel 1e-6 of a float64 formula), weights to 6 decimals (abs=1e-6);
    the float32 kernel sums 9 weights ~0.11 to 1 within a few ulps (~2e-7) < 1e-6."""
    for size, sigma, centre, edge, corner in [(12, 2.15, 0.128012, 0.114888, 0.103109),
                                              (32, 5.15, 0.113930, 0.111803, 0.109715),
                                              (56, 8.75, 0.112082, 0.111352, 0.110627)]:
        assert gaussian_sigma("feature", 3, size, size) == pytest.approx((sigma, sigma))
        k = SmoothBlock(1, "gaussian", size=(size, size)).kernel
        assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert [k[1, 1].item(), k[0, 1].item(), k[0, 0].item()] == pytest.approx([centre, edge, corner], abs=1e-6)
    k = SmoothBlock(1, "gaussian", sigma="ksize", size=(32, 32)).kernel
    assert [k[1, 1].item(), k[0, 1].item(), k[0, 0].item()] == pytest.approx([0.272496, 0.124758, 0.057118], abs=1e-6)


def test_spec_block_values():
    """ALGORITHMS.md §3.6: 4×4 map, σ = 0.95, 1×1 conv weight 0.5 bias 0.1."""
    h = _h4()
    block = SmoothBlock(1, "gaussian", size=(4, 4))
    with torch.no_grad():
        block.conv.weight.fill_(0.5)
        block.conv.bias.fill_(0.1)
    blur = torch.tensor([[1.14373, 0.995176, 0.571865, 0], [0.995176, 0.865917, 0.497588, 0],
                         [0.571865, 0.497588, 0.857798, 0.995176], [0, 0, 0.995176, 1.731834]])
    y = torch.tensor([[0.671865, 0.597588, 0.385933, 0.1], [0.597588, 4.532959, 0.348794, 0.1],
                      [0.385933, 0.348794, 0.528899, 0.597588], [0.1, 0.1, 0.597588, 8.965917]])
    # the spec's values are printed to 5-6 significant digits (1.14373): atol 1e-5 is their precision; float32
    # rounding of these 9-term sums (|h| <= 8) is ~1e-6
    torch.testing.assert_close(block.smooth(h)[0, 0], blur, atol=1e-5, rtol=0)
    torch.testing.assert_close(block(h)[0, 0].detach(), y, atol=1e-5, rtol=0)
    box = torch.tensor([[16, 8, 8, 0], [8, 4, 4, 0], [8, 4, 12, 8], [0, 0, 8, 8]]) / 9
    # sums of integers / 9 vs the same division: equal to an ulp or two, within the float32 defaults
    torch.testing.assert_close(SmoothBlock(1, "mean", size=(4, 4)).smooth(h)[0, 0], box)
    assert SmoothBlock(1, "median", size=(4, 4)).smooth(h).abs().sum() == 0
    m = SmoothBlock(1, "median", size=(3, 3)).smooth(torch.arange(1.0, 10).view(1, 1, 3, 3))[0, 0]
    torch.testing.assert_close(m, torch.tensor([[0.0, 2, 0], [2, 5, 3], [0, 5, 0]]), rtol=0, atol=0)  # a selection


def test_constants_and_borders():
    c = torch.full((1, 2, 5, 5), 3.0)
    for f in ("gaussian", "mean"):  # weights summing to 1 within ~2 ulps: 3 x (1 ± 2.4e-7), float32 defaults
        torch.testing.assert_close(SmoothBlock(2, f, size=(5, 5)).smooth(c), c)
    med = SmoothBlock(2, "median", size=(5, 5)).smooth(c)
    assert med[0, 0, 0, 0] == 0 and med[0, 0, 2, 2] == 3  # zero padding at the corner, as the code does
    torch.testing.assert_close(SmoothBlock(2, "median", size=(5, 5), border="reflect").smooth(c), c, rtol=0, atol=0)


@pytest.mark.parametrize("backbone,size", [("smallcnn", 32), ("resnet18", 32), ("efficientnet_b0", 32)])
@pytest.mark.parametrize("placement", [1, 2, 3])
def test_every_placement_keeps_shapes(backbone, size, placement):
    torch.manual_seed(0)
    model = build_classifier(backbone, num_classes=4).eval()
    x = torch.rand(2, 3, size, size)
    name = stage_names(model.net)[placement - 1]
    before = {}
    model.net.get_submodule(name).register_forward_hook(lambda m, i, o: before.update(s=o.shape))
    ref = model(x).shape
    insert_smooth_block(model, placement, size, filter="gaussian", conv_init="zeros")
    assert isinstance(model, Classifier)
    wrapped = model.net.get_submodule(name)
    assert isinstance(wrapped.smooth, SmoothBlock) and wrapped.smooth.size == tuple(before["s"][-2:])
    after = {}
    wrapped.register_forward_hook(lambda m, i, o: after.update(s=o.shape))
    assert model(x).shape == ref
    assert after["s"] == before["s"]
    model.target_layer  # the CAM target still resolves


def test_zero_init_insertion_keeps_the_function():
    torch.manual_seed(0)
    model = build_classifier("resnet18", num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    ref = model(x)
    insert_smooth_block(model, 2, 32, filter="median", conv_init="zeros")
    # the zero-init block adds an exact 0, so the same float32 network runs: the float32 defaults only cover
    # a kernel chosen differently for the wrapped stage's output
    torch.testing.assert_close(model(x), ref)


def test_stage_names():
    assert stage_names(build_classifier("resnet18", 3).net)[:3] == ["layer1", "layer2", "layer3"]
    assert stage_names(build_classifier("smallcnn", 3).net)[:3] == ["stages.0", "stages.1", "stages.2"]
    assert stage_names(build_classifier("convnext_atto", 3).net)[:3] == ["stages.0", "stages.1", "stages.2"]
    assert stage_names(build_classifier("efficientnet_b0", 3).net)[:3] == ["blocks.0", "blocks.1", "blocks.2"]


def test_bad_placement_names_the_stages():
    with pytest.raises(ValueError, match="layer1"):
        insert_smooth_block(build_classifier("resnet18", 3), 9, 32)


# ---- regime smooth_at ------------------------------------------------------------------------------
def test_smooth_at_builds_and_steps():
    regime = REGIMES.get("smooth_at")({"filter": "median", "placement": 2, "eps": 8 / 255, "steps": 2})
    assert isinstance(regime, REGIMES.get("pgd_at"))  # the same training step as the A baseline
    model = regime.build_model(build_classifier("smallcnn", num_classes=3)).train()
    assert isinstance(model.net.stages[1].smooth, SmoothBlock)
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 3, (4,))
    loss, logs = regime.loss(model, x, y)
    assert torch.isfinite(loss) and "train/adv_acc" in logs
    loss.backward()
    assert model.net.stages[1].smooth.conv.weight.grad.abs().sum() > 0
    assert all(p.requires_grad for p in model.parameters())  # the attack restored them


def test_smooth_at_options_step():
    regime = REGIMES.get("smooth_at")({"norm": "l2", "eps": 0.5, "steps": 1, "bn": "eval", "sigma": "ksize",
                                       "filter": "mean", "placement": 3, "border": "zeros", "conv_init": "zeros"})
    model = regime.build_model(build_classifier("smallcnn", num_classes=3)).train()
    loss, _ = regime.loss(model, torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    assert torch.isfinite(loss) and model.training


def test_smooth_at_params_validate():
    cfg = RegimeConfig(name="smooth_at", params={"filter": "mean", "placement": 3, "eps": 0.01, "sigma": 1.5})
    assert REGIMES.get("smooth_at")(cfg.params).params.sigma == 1.5
    for bad, field in [({"filter": "bilateral"}, "filter"), ({"placement": 4}, "placement"),
                       ({"eps": 0}, "eps"), ({"norm": "l1"}, "norm"), ({"sigma": "auto"}, "sigma"),
                       ({"kernel_size": 4}, "kernel_size")]:
        with pytest.raises(ValueError, match=field):
            RegimeConfig(name="smooth_at", params=bad)
