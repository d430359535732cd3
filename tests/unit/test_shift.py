"""#18.3: distribution-shift evaluation (``evaluation.shift`` -> ``shift/<name>/acc``)."""
import pytest
import torch

from trainables.config import TrialConfig
from trainables.data import build_dataset
from trainables.errors import ConfigError
from trainables.evaluation import EvalContext, evaluate
from trainables.models import build_classifier
from trainables.regimes import build_regime

SHAPES = {"num_classes": 4, "n_train": 8, "n_test": 24, "spurious_corr": 0.95}


def _cfg(**shift_params):
    return TrialConfig.parse({
        "dataset": {"image_size": 32, "params": {**SHAPES, "test_cue": True}},
        "evaluation": {"groups": ["accuracy"], "batch_size": 10,
                       "shift": [{"name": "nocue", "dataset": {"image_size": 32,
                                                               "params": {**SHAPES, **shift_params}}}]}})


def _ctx(cfg):
    torch.manual_seed(0)
    model = build_classifier("smallcnn", 4).eval()
    return EvalContext(model=model, cfg=cfg, regime=build_regime(cfg), device=torch.device("cpu"), num_classes=4)


def test_shift_acc_equals_the_accuracy_group_run_on_that_dataset():
    cfg = _cfg()
    ctx = _ctx(cfg)
    metrics = evaluate(ctx, build_dataset(cfg.dataset).split("test"))
    direct_cfg = TrialConfig.parse({"dataset": cfg.evaluation.shift[0].dataset.model_dump(mode="json"),
                                    "evaluation": {"groups": ["accuracy"]}})
    shifted = build_dataset(direct_cfg.dataset).split("test")
    direct = evaluate(_ctx(direct_cfg), shifted)
    assert metrics["shift/nocue/acc"] == direct["acc/top1"]  # the same computation on the same images
    assert set(metrics) == {"acc/top1", "acc/top5", "shift/nocue/acc", "cost/eval_seconds"}
    assert "per_image" in ctx.artifacts and len(ctx.artifacts["per_image"]) == 24  # the main test split's table


def test_shapes_bias_pair_differs_only_in_the_tint():
    cfg = _cfg()
    cued = build_dataset(cfg.dataset).split("test")
    plain = build_dataset(cfg.evaluation.shift[0].dataset).split("test")
    assert torch.equal(cued.labels, plain.labels) and torch.equal(cued.masks, plain.masks)
    assert not torch.equal(cued.images, plain.images)


def test_class_count_mismatch_is_one_config_line():
    with pytest.raises(ConfigError) as e:
        _cfg(num_classes=5)
    msg = str(e.value)
    assert "evaluation.shift 'nocue'" in msg and "5 classes" in msg and "trained on 4" in msg
    assert len(msg.strip().splitlines()) == 1


def test_cub_model_needs_waterbirds_species(tmp_path):
    base = {"dataset": {"name": "cub", "root": str(tmp_path)}}
    with pytest.raises(ConfigError, match="'waterbirds' has 2 classes, the model is trained on 200"):
        TrialConfig.parse({**base, "evaluation": {"shift": [{"name": "wb", "dataset": {
            "name": "waterbirds", "root": str(tmp_path)}}]}})
    cfg = TrialConfig.parse({**base, "evaluation": {"shift": [{"name": "wb", "dataset": {
        "name": "waterbirds", "root": str(tmp_path), "params": {"target": "species"}}}]}})
    assert cfg.evaluation.shift[0].name == "wb"


def test_cub_to_waterbirds_species_labels_and_class_check(tmp_path):
    from test_real_loaders import write_cub, write_waterbirds
    from trainables.data.check import check_trial_data

    write_cub(tmp_path / "cub")
    wb = write_waterbirds(tmp_path / "wb")
    shift = {"name": "wb", "dataset": {"name": "waterbirds", "root": str(wb), "params": {"target": "species"}}}
    cfg = TrialConfig.parse({"dataset": {"name": "cub", "root": str(tmp_path / "cub")},
                             "evaluation": {"shift": [shift]}})
    ds = build_dataset(cfg.evaluation.shift[0].dataset)
    assert [int(ds.load("train")[i]["label"]) for i in range(2)] == [0, 199]  # CUB's class of each image
    assert ds.class_names[0] == "Black_footed_Albatross"
    check_trial_data(cfg)  # the same names: passes
    (tmp_path / "cub" / "CUB_200_2011" / "classes.txt").write_text("1 001.Laysan_Albatross\n")
    with pytest.raises(ConfigError, match="class 0 is 'Black_footed_Albatross' in 'waterbirds' but 'Laysan_Albatross'"):
        check_trial_data(cfg)


def test_shift_key_alone_like_a_rung_evaluation():
    cfg = _cfg()
    data = build_dataset(cfg.dataset).split("test")
    full = evaluate(_ctx(cfg), data)
    alone = evaluate(_ctx(cfg), data, keys=["shift/nocue/acc"])
    assert alone["shift/nocue/acc"] == full["shift/nocue/acc"]
