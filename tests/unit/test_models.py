"""Backbone factory: every documented family builds, normalises inside, and has its Grad-CAM layer."""
import pytest
import torch

from trainables.models import TARGET_LAYERS, build_classifier, family_of, unwrap


@pytest.mark.parametrize("backbone", ["smallcnn", "resnet18", "mobilenetv2_100", "efficientnet_b0",
                                      "densenet121", "vgg11_bn", "convnext_atto"])
def test_family_builds_with_target_layer(backbone):
    model = build_classifier(backbone, num_classes=5).eval()
    feats = {}
    model.target_layer.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 5)
    assert feats["a"].dim() == 4  # a spatial map for Grad-CAM
    assert model.target_layer_name == TARGET_LAYERS[family_of(backbone)]


def test_normalisation_lives_inside_the_wrapper():
    model = build_classifier("smallcnn", num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = model.net((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                         / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    # the same float32 ops in the same order (the wrapper's (x - mean) / std, then net): equal up to kernel
    # choice; assert_close's float32 defaults (rtol 1.3e-6, atol 1e-5) are a few ulps of logits of size ~1
    torch.testing.assert_close(model(x), expected)


def test_vgg_gets_a_gap_head():
    model = build_classifier("vgg11_bn", num_classes=4).eval()
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 4)
    assert model(torch.rand(1, 3, 96, 96)).shape == (1, 4)  # GAP: any input size


def test_grayscale_input():
    model = build_classifier("smallcnn", num_classes=10, in_chans=1)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_unwrap_ddp_like():
    model = build_classifier("smallcnn", num_classes=3)

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.module = m

    assert unwrap(Wrapper(model)) is model
