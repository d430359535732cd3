"""Gradient-masking checks (trainables/evaluation/sanity.py): a deliberately masked model (8-bit quantisation,
a non-differentiable input transform, in front of a trained CNN) is flagged; the same CNN unmasked is not."""
import pytest
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.evaluation import EvalContext, evaluate
from trainables.evaluation.sanity import SanityParams, judge
from trained_tiny import dataset, trained


class Quantize(nn.Module):
    """x -> round(255·x)/255: the same image for the classifier, zero input gradient everywhere."""

    def forward(self, x):
        return torch.round(x * 255) / 255


def _evaluate(model):
    cfg = TrialConfig.parse({"dataset": {"name": "shapes", "image_size": 16, "params": {"num_classes": 6}},
                             "evaluation": {"groups": ["robustness"], "num_images": 64, "batch_size": 32,
                                            "robust": {"victim": "model"},
                                            "params": {"sanity": {"images": 32, "square_queries": 300}}}})
    ctx = EvalContext(model=model, cfg=cfg, regime=None, device=torch.device("cpu"), num_classes=6)
    metrics = evaluate(ctx, dataset().split("test"), keys=["sanity/flags"])
    return metrics, {k.removeprefix("sanity."): v for k, v in ctx.tags.items() if k.startswith("sanity.")}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return trained()[0]


def test_ordinary_trained_model_is_not_flagged(tiny):
    metrics, tags = _evaluate(tiny)
    assert tags["flagged"] == "none", tags
    assert metrics["sanity/flags"] == 0
    assert set(tags) == {"flagged", "images", "pgd_vs_fgsm", "eps_growth", "unbounded", "more_steps", "square", "autoattack"}
    assert tags["images"] == "32 images, tolerance 0.062"
    assert all(v.startswith("ok: ") for k, v in tags.items() if k not in ("flagged", "images"))


def test_gradient_masked_model_is_flagged(tiny):
    masked = nn.Sequential(Quantize(), tiny).eval()
    metrics, tags = _evaluate(masked)
    flagged = set(tags["flagged"].split(","))
    assert {"eps_growth", "unbounded"} <= flagged, tags  # zero gradients: PGD cannot lower accuracy at any ε
    assert metrics["sanity/flags"] == len(flagged) >= 2
    assert tags["unbounded"].startswith("FLAG: eps_1 ")


def test_unbounded_counts_the_nested_smaller_balls(tiny, monkeypatch):
    """An image fooled at ε or 4ε is fooled inside the ε = 1 ball too: a PGD-10 at ε = 1 that fails on its own
    (its fixed step overshoots) is no flag while the smaller radii succeed; when they fail too, it is."""
    import trainables.attacks as attacks

    real = attacks.pgd

    def huge_fails(model, x, y, eps, **kw):  # the ε = 1 run returns the clean images: the attack "failed"
        return x.detach().clone() if eps >= 1.0 else real(model, x, y, eps, **kw)

    monkeypatch.setattr(attacks, "pgd", huge_fails)
    _, tags = _evaluate(tiny)
    assert tags["unbounded"].startswith("ok: eps_1 0.0"), tags
    assert tags["eps_growth"].endswith("4x_eps 0.000"), tags  # the 4ε run fooled every image here

    monkeypatch.setattr(attacks, "pgd", lambda model, x, y, eps, **kw: x.detach().clone())  # every PGD fails
    _, tags = _evaluate(tiny)
    assert tags["unbounded"].startswith("FLAG: eps_1 "), tags


def test_judge_thresholds():
    p = SanityParams()
    base = {"fgsm": 0.5, "pgd": 0.4, "pgd0": 0.4, "pgd_big": 0.05, "pgd_huge": 0.0, "pgd_strong": 0.38,
            "square": 0.45, "autoattack": 0.35}
    assert not any(f for f, _ in judge(base, p).values())
    bad = {**base, "pgd": 0.6, "pgd_strong": 0.7, "square": 0.3, "autoattack": 0.45, "pgd_huge": 0.2, "pgd_big": 0.38}
    assert {k for k, (f, _) in judge(bad, p).items() if f} == {"pgd_vs_fgsm", "more_steps", "square", "autoattack",
                                                              "unbounded", "eps_growth"}
    assert "autoattack" not in judge({k: v for k, v in base.items() if k != "autoattack"}, p)
