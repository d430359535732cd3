"""trainables.metrics.robustness: ARA / BTR-ARA hand values (ALGORITHMS.md §5.6), properties, indicators."""
import pytest
import torch

from trainables.metrics.robustness import accuracy_curve, agree, ara, ara_histogram, correct, topk_correct

HAND = [  # distances, N, exact area (ALGORITHMS.md §5.6; hand-checked below)
    ([0, .01, .02, .03, .04], 0.1, 0.016),
    ([0, 0, .005, .01, .01, .02, .03, .05, .08, .1], 0.1, 0.0205),
    ([0.02] * 10, 0.1, 0.018),
    ([0, .01, .02, .03, .04], 0.5, 0.004),
]


@pytest.mark.parametrize("d,naive,area", HAND)
def test_ara_hand_values(d, naive, area):
    assert ara(torch.tensor(d, dtype=torch.float64), naive) == pytest.approx(area, abs=1e-12)
    approx = ara_histogram(torch.tensor(d), naive)  # the authors' 1,000-bin sum under-estimates slightly
    assert approx <= area + 1e-7 and approx == pytest.approx(area, abs=2e-5)


def test_ara_by_hand_trapezoids():
    """[0, .01, .02, .03, .04], N = 0.1: A(r) steps 0.8 → 0.6 → 0.4 → 0.2 → 0 at each .01, so the area above N is
    .01·(0.7 + 0.5 + 0.3 + 0.1) = 0.016; a BTR list with the same shape but doubled radii has double the area."""
    d = torch.tensor([0, .01, .02, .03, .04], dtype=torch.float64)
    assert ara(d, 0.1) == pytest.approx(0.01 * (0.7 + 0.5 + 0.3 + 0.1))
    assert ara(2 * d, 0.1) == pytest.approx(2 * 0.016)
    curve = accuracy_curve(torch.tensor([0, 0, .005, .01, .01, .02, .03, .05, .08, .1]), torch.tensor([0, .004, .01, .015, .05, .09, .1]))
    assert curve.tolist() == pytest.approx([0.8, 0.8, 0.5, 0.5, 0.2, 0.1, 0.0])


def test_ara_properties():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(50, generator=g, dtype=torch.float64) * 0.05
    assert ara(torch.zeros(7), 0.1) == 0.0  # every image initially misclassified
    assert ara(torch.full((10,), 0.03), 0.1) == pytest.approx(0.9 * 0.03)  # (A − N)·d
    bigger = d.clone()
    bigger[3] += 0.01
    assert ara(bigger, 0.1) >= ara(d, 0.1)  # monotone in every distance
    assert ara(d, 0.1) == ara(d[torch.randperm(50, generator=g)], 0.1)  # order-free
    assert ara(d, 0.3) < ara(d, 0.1)
    with pytest.raises(ValueError, match="finite"):
        ara(torch.tensor([0.1, float("inf")]), 0.1)
    with pytest.raises(ValueError, match="naive"):
        ara(d, 1.0)


def test_indicators():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 5.0]])
    clean = torch.tensor([[3.0, 0.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    y = torch.tensor([0, 0, 1])
    assert correct(logits, y).tolist() == [1, 0, 0]
    assert agree(logits, clean).tolist() == [1, 0, 1]
    assert topk_correct(logits, y, 2).tolist() == [1, 0, 1]
    assert topk_correct(logits, y, 5).tolist() == [1, 1, 1]  # k capped at V
