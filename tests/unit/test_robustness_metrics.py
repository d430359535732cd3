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
    # exact trapezoids in float64 against hand values (exact decimals): abs 1e-12 >> float64 rounding (~1e-17)
    assert ara(torch.tensor(d, dtype=torch.float64), naive) == pytest.approx(area, abs=1e-12)
    # the authors' 1,000-bin sum under-estimates slightly: each image is counted from its bin's start, so the
    # bias is < gap x (1 - N) with gap = max d / 1000 (1.8e-5 for [0.02] x 10, where every image loses its
    # bin; measured 1.3e-9..1.8e-5 here); + 1e-7 above covers float32 rounding of the 1000-term sum times the
    # gap (~1e-9). Bin indices come from elementwise float32 ops, not from an ISA-dependent summation order.
    approx = ara_histogram(torch.tensor(d), naive)
    assert approx <= area + 1e-7 and approx == pytest.approx(area, abs=2e-5)


def test_ara_by_hand_trapezoids():
    """[0, .01, .02, .03, .04], N = 0.1: A(r) steps 0.8 → 0.6 → 0.4 → 0.2 → 0 at each .01, so the area above N is
    .01·(0.7 + 0.5 + 0.3 + 0.1) = 0.016; a BTR list with the same shape but doubled radii has double the area."""
    d = torch.tensor([0, .01, .02, .03, .04], dtype=torch.float64)  # float64 vs hand values: approx rel 1e-6
    assert ara(d, 0.1) == pytest.approx(0.01 * (0.7 + 0.5 + 0.3 + 0.1))
    assert ara(2 * d, 0.1) == pytest.approx(2 * 0.016)
    curve = accuracy_curve(torch.tensor([0, 0, .005, .01, .01, .02, .03, .05, .08, .1]), torch.tensor([0, .004, .01, .015, .05, .09, .1]))
    assert curve.tolist() == pytest.approx([0.8, 0.8, 0.5, 0.5, 0.2, 0.1, 0.0])  # k / 10 in float64: the literals


def test_ara_properties():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(50, generator=g, dtype=torch.float64) * 0.05
    assert ara(torch.zeros(7), 0.1) == 0.0  # every image initially misclassified
    assert ara(torch.full((10,), 0.03), 0.1) == pytest.approx(0.9 * 0.03)  # (A − N)·d, float32 in: rel 1e-6
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


# ---- the robustness group (attacks + ARA families) ----------------------------------------------------------
def _ctx(**robust):
    from calibrated import calibrated
    from trainables.config import TrialConfig
    from trainables.evaluation import EvalContext

    cfg = TrialConfig.parse({"dataset": {"image_size": 16}, "evaluation": {
        "groups": ["robustness"], "batch_size": 6, "robust": {
            "pgd_steps": 2, "ara_steps": 8, "explain_images": 2, "explain_steps": 3, **robust}}})
    model, x, pred = calibrated("smallcnn", 3, size=16, n=12, seed=0)
    y = torch.where(torch.arange(12) % 3 == 0, (pred + 1) % 3, pred)  # images 0, 3, 6, 9 misclassified
    return EvalContext(model=model, cfg=cfg, regime=None, device=torch.device("cpu"), num_classes=3), x, y


def test_robustness_group_keys_and_ara_sample():
    from trainables.evaluation import evaluate
    from trainables.metrics.keys import KEYS

    ctx, x, y = _ctx(ara_images=5)
    data = [{"image": xi, "label": yi} for xi, yi in zip(x, y)]
    out = evaluate(ctx, data)
    table = ctx.artifacts["per_image"]
    values = {k: torch.tensor(table[k].to_numpy()) for k in table.columns}
    # images in order until the 5th correct one (index 6 is wrong, 7 is the 5th correct): 0..7 are in
    taken = ~torch.isnan(values["_ara"])
    assert taken.tolist() == [True] * 8 + [False] * 4
    assert torch.all(values["_ara"][[0, 3, 6]] == 0) and torch.all(values["_btr"][[0, 3, 6]] == 0)
    assert torch.all(values["_ara"][[1, 2, 4, 5, 7]] > 0)
    # an attack against the label never turns a misclassified image into a correct one, and robust accuracy
    # is at most the clean accuracy image by image
    wrong = torch.tensor([0, 3, 6, 9])
    assert values["robust/fgsm"][wrong].sum() == 0 and values["robust/pgd"][wrong].sum() == 0
    clean = (values["pred"] == values["label"]).float()
    assert torch.all(values["robust/pgd"] <= clean) and torch.all(values["robust/fgsm"] <= clean)
    assert set(values) >= {"robust/pgd_l2_agree", "robust/pgd_top5"}
    # the default attack list (fgsm, pgd, pgd_l2; APGD / Square / AutoAttack are opt-in), ARA, and the gradient-
    # masking checks' count
    default = {k for k in KEYS if k.startswith("robust/") and k.split("/")[1].split("_")[0] in ("fgsm", "pgd", "ara", "btr")}
    assert set(out) - {"cost/eval_seconds"} == default | {"sanity/flags"}
    assert not {"robust/apgd_ce", "robust/square", "robust/autoattack"} & set(out)
    assert all(0 <= v <= 1 for k, v in out.items() if "ara" not in k and k.startswith("robust/"))
    assert out["robust/ara"] >= 0
    assert ctx.tags["robust/ara_images"] == "8" and "adversarial_explanations" in ctx.artifacts
    assert ctx.cfg.evaluation.robust.linf_eps(16) == 8 / 255 and ctx.cfg.evaluation.robust.linf_eps(64) == 1 / 255
