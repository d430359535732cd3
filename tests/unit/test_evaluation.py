"""The evaluation suite's contract over every registered metric family: exactly the declared keys, all in
``metrics/keys.py``; a key computed alone equals its value in the full evaluation; names validated against
the registries; the per-image table; the audit fixes (ssim_vg over σ, IFIA smooth copy)."""
import math

import pytest
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data import TensorSplit, build_dataset
from trainables.errors import ConfigError
from trainables.evaluation import FAMILIES, EvalContext, evaluate
from trainables.metrics.keys import KEYS
from trainables.models import build_classifier
from trainables.regimes import build_regime

EVAL = {
    "groups": ["accuracy", "robustness", "explain"], "num_images": 12, "batch_size": 6,
    "robust": {"pgd_steps": 2, "ara_images": 4, "ara_steps": 5, "explain_images": 1, "explain_steps": 2,
               "apgd_steps": 2, "square_queries": 5},
    "params": {"sanity": {"images": 6, "strong_steps": 3, "square_queries": 5}},
    "explain": {"ifia_steps": 1, "ifia_ig_steps": 2, "ig_steps": 4, "ros_samples": 2, "ros_noise": [0.001, 0.002],
                "noise_sigmas": [0.001, 0.002], "road_fractions": [0.2, 0.6], "attr_topk": 20, "attr_images": 3,
                "gallery_images": 1},
}


def _setup(evaluation=None):
    """12 shapes test images (boxes and masks), a BN-calibrated smallcnn, labels = its predictions except 3."""
    cfg = TrialConfig.parse({"dataset": {"image_size": 32, "params": {"n_train": 8, "n_test": 12, "num_classes": 4}},
                             "evaluation": evaluation or EVAL})
    test = build_dataset(cfg.dataset).split("test")
    torch.manual_seed(0)
    model = build_classifier("smallcnn", 4)
    x = test.images.float() / 255
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 1.0
    with torch.no_grad():
        model.train()(x)
        pred = model.eval()(x).argmax(1)
    labels = torch.where(torch.arange(12) % 4 == 0, (pred + 1) % 4, pred)
    data = TensorSplit(test.images, labels, test.boxes, test.masks)
    return cfg, model, data


def _ctx(cfg, model):
    return EvalContext(model=model, cfg=cfg, regime=build_regime(cfg), device=torch.device("cpu"), num_classes=4)


@pytest.fixture(scope="module")
def full():
    cfg, model, data = _setup()
    ctx = _ctx(cfg, model)
    return cfg, model, data, ctx, evaluate(ctx, data)


def test_every_family_produces_exactly_its_declared_keys(full):
    cfg, _, _, ctx, metrics = full
    produced = set(metrics) - {"cost/eval_seconds"}
    expected = set()
    for name in FAMILIES.names():
        fam = FAMILIES.get(name)
        assert set(fam.all_keys()) <= set(KEYS), name
        assert set(fam.configured(cfg)) <= set(fam.all_keys()), name
        if fam.group in cfg.evaluation.groups:
            expected |= set(fam.configured(cfg))
    assert produced == expected and not [t for t in ctx.tags if t.startswith("absent.")]
    assert {"explain/box_iou", "robust/ara", "explain/attr_topk", "explain/ssim_vg", "acc/top1"} <= produced


def test_each_key_alone_equals_the_full_evaluation(full):
    cfg, model, data, _, metrics = full
    for key in sorted(set(metrics) - {"cost/eval_seconds"}):
        alone = evaluate(_ctx(cfg, model), data, keys=[key])
        assert set(alone) == {key, "cost/eval_seconds"}, key
        assert alone[key] == metrics[key], key


def test_a_key_alone_computes_only_its_family():
    cfg, model, data = _setup()
    ctx = _ctx(cfg, model)
    evaluate(ctx, data, keys=["explain/box_iou"])
    assert "victim" not in ctx._shared and not any(k.startswith("attack/") for k in ctx._shared)
    ctx = _ctx(cfg, model)
    evaluate(ctx, data, keys=["robust/pgd"])
    assert set(ctx.artifacts) == {"per_image"} and "attack/pgd/labels" in ctx._shared
    assert "attack/fgsm/labels" not in ctx._shared and "attack/pgd/agree" not in ctx._shared


def test_unknown_key_lists_the_valid_ones(full):
    cfg, model, data, _, _ = full
    with pytest.raises(ValueError, match="no metric family produces 'explain/nope'; valid: .*explain/box_iou"):
        evaluate(_ctx(cfg, model), data, keys=["explain/nope"])


def test_per_image_table(full):
    _, _, data, ctx, metrics = full
    table = ctx.artifacts["per_image"]
    assert list(table.columns[:3]) == ["index", "label", "pred"] and len(table) == 12
    assert table["index"].tolist() == list(range(12)) and table["label"].tolist() == data.labels.tolist()
    assert table["acc/top1"].tolist() == (table["label"] == table["pred"]).astype(float).tolist()
    assert table["explain/gini_vg"].isna().tolist() == (table["label"] != table["pred"]).tolist()
    assert table["explain/box_iou"].mean() == pytest.approx(metrics["explain/box_iou"])  # one mean, two orders


def test_effective_settings(full):
    cfg, _, _, ctx, _ = full
    s = ctx.settings
    assert s["evaluation.localization.cam"] == "gradcam" and s["evaluation.attacks.pgd.eps"] == 8 / 255
    assert s["evaluation.attacks.pgd.alpha"] == pytest.approx(2.5 * (8 / 255) / 2)  # Python floats: rel 1e-6
    assert s["evaluation.ifia.smooth_copy"] == "smooth" and s["evaluation.ara.naive"] == 0.25


def test_topgap_effective_k_in_pixels():
    from trainables.evaluation.suite import regime_settings

    for params in ({"k_frac": 0.125}, {}):  # given, and the default decided by the regime
        cfg = TrialConfig.parse({"dataset": {"image_size": 32}, "regime": {"name": "topgap", "params": params}})
        regime = build_regime(cfg)
        assert regime.params is cfg.regime.typed  # validated once with the config, never re-parsed
        model = regime.build_model(build_classifier("smallcnn", 4)).eval()
        eff = regime.effective(model)
        assert eff["k_frac"] == eff["k"] / eff["cam_pixels"] and eff["k"] >= 1
        if params:
            assert eff["k"] == round(0.125 * eff["cam_pixels"])
        logged = regime_settings(EvalContext(model=model, cfg=cfg, regime=regime, device=torch.device("cpu"),
                                             num_classes=4))
        assert logged["regime.k"] == eff["k"] and logged["regime.k_frac"] == eff["k_frac"]  # no None left
        assert logged["regime.lam"] == 1.0 and logged["regime.fpn"] is True


@pytest.mark.parametrize("section,value,message", [
    ({"robust": {"attacks": ["fgsm", "cw"]}}, None, "evaluation.robust.attacks.1: unknown evaluation attack 'cw'; valid: apgd_ce, apgd_dlr, autoattack, autoattack_l2, fgsm, pgd, pgd_l2, square"),
    ({"explain": {"cam": "scorecam"}}, None, "unknown CAM method 'scorecam'; valid:"),
    ({"explain": {"metrics": ["box_iou", "beauty"]}}, None, "unknown explain metric 'beauty'; valid:"),
    ({"groups": ["accuracy", "vibes"]}, None, "unknown evaluation group 'vibes'; valid: accuracy, corruption, explain, robustness"),
    ({"params": {"nope": {}}}, None, "unknown metric family 'nope'; valid:"),
    ({"params": {"ara": {"stepz": 3}}}, None, "evaluation.params.ara.stepz: unknown field"),
])
def test_names_are_validated_against_the_registries(section, value, message):
    with pytest.raises(ConfigError) as e:
        TrialConfig.parse({"evaluation": section})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_registered_cam_method_is_a_valid_name_without_editing_the_config():
    from trainables.explain import CAM_METHODS
    from trainables.explain.gradcam import GradCAM

    CAM_METHODS.register("toycam")(GradCAM)
    try:
        assert TrialConfig.parse({"evaluation": {"explain": {"cam": "toycam"}}}).evaluation.explain.cam == "toycam"
    finally:
        CAM_METHODS._items.pop("toycam")


# ---- audit fixes -----------------------------------------------------------------------------------------
def test_ssim_vg_is_the_mean_over_sigma_of_per_sigma_means():
    from trainables.evaluation.attribution import Attribution

    cfg, model, _ = _setup()
    fam = Attribution(_ctx(cfg, model), {"explain/ssim_vg"})
    nan = float("nan")
    values = {"_ssim_vg/0": torch.tensor([1.0, 1.0, nan]), "_ssim_vg/1": torch.tensor([0.0, nan, nan]),
              "explain/ssim_vg": torch.tensor([0.5, 1.0, nan])}  # per image: mean over its admitted σ
    assert fam.reduce(values)["explain/ssim_vg"] == pytest.approx(0.5)  # (1 + 0) / 2, not (0.5 + 1) / 2 (exact)


class _FunctionalReLUNet(nn.Module):
    """ReLU called as a function: no module to smooth."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_ifia_is_absent_with_the_reason_when_the_smooth_copy_is_not_smooth():
    cfg, _, data = _setup(EVAL | {"groups": ["explain"]} | {"explain": EVAL["explain"] | {
        "metrics": ["attr_topk", "attr_kendall"]}})
    torch.manual_seed(0)
    model = _FunctionalReLUNet().eval()
    with torch.no_grad():
        pred = model(data.images.float() / 255).argmax(1)
    data = TensorSplit(data.images, pred, data.boxes, data.masks)
    ctx = _ctx(cfg, model)
    out = evaluate(ctx, data)
    assert "explain/attr_topk" not in out and "explain/attr_kendall" not in out
    assert "piecewise linear" in ctx.tags["absent.explain/attr_topk"]
    assert ctx.artifacts["per_image"]["explain/attr_topk"].isna().all()


# ---- DDP: sharding and gathering ---------------------------------------------------------------------------
DETERMINISTIC = ["acc/top1", "acc/top5", "robust/fgsm", "robust/fgsm_agree", "explain/box_iou", "explain/mask_iou",
                 "explain/pointing", "explain/cam_l1", "explain/gini_vg", "explain/gini_ig"]


def _ddp_eval_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        cfg, model, data = _setup()
        ctx = _ctx(cfg, model)
        metrics = evaluate(ctx, data, rank, world, keys=DETERMINISTIC)
        if rank == 0:
            torch.save({"metrics": metrics, "table": ctx.artifacts["per_image"]}, out)
        else:
            assert "per_image" not in ctx.artifacts
    finally:
        dist.destroy_process_group()


def test_two_ranks_shard_and_gather_to_the_single_process_result(tmp_path):
    """2 gloo ranks each evaluate half the images; the gathered metrics and per-image table are those of one
    process on all images (keys without random draws; ARA / IFIA quotas are split per rank by design)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp_eval.pt")
    mp.start_processes(_ddp_eval_worker, args=(2, port, out), nprocs=2, join=True, start_method="spawn")
    got = torch.load(out, weights_only=False)
    cfg, model, data = _setup()
    ctx = _ctx(cfg, model)
    ref = evaluate(ctx, data, keys=DETERMINISTIC)
    # The same float32 per-image computations on batches of 6 instead of 12 (other kernel blocking): the
    # continuous values (Gini, CAM ℓ1) differ by float32 rounding (~1e-6 of values <= 1), inside abs 1e-5. The
    # thresholded ones (box / mask IoU, pointing, FGSM agreement, accuracy) are discontinuous at their
    # thresholds: they agree exactly unless a CAM pixel or a logit gap lies within float32 rounding of one,
    # which does not happen for this seed; only a float64 evaluation would make that part independent of the
    # kernels (the evaluation runs float32 images).
    for key in DETERMINISTIC:
        assert got["metrics"][key] == pytest.approx(ref[key], abs=1e-5), key
    table, want = got["table"], ctx.artifacts["per_image"]
    assert table["index"].tolist() == want["index"].tolist() == list(range(12))
    assert table["pred"].tolist() == want["pred"].tolist()
    for key in DETERMINISTIC:
        assert table[key].isna().tolist() == want[key].isna().tolist(), key
        assert (table[key] - want[key]).abs().max() < 1e-5 or want[key].isna().all(), key
