"""TrialConfig: defaults validate, every mistake is one line naming the field and what is allowed."""
import pytest

from trainables.config import TrialConfig, apply_overrides
from trainables.errors import ConfigError

MISTAKES = [
    ({"optim": {"lr": -1}}, "optim.lr"),
    ({"optim": {"optimizer": "lbfgs"}}, "optim.optimizer"),
    ({"optim": {"epochs": 0}}, "optim.epochs"),
    ({"optim": {"bach_size": 3}}, "optim.bach_size: unknown field (did you mean 'batch_size'?)"),
    ({"dataset": {"name": "imagenet22k"}}, "unknown dataset 'imagenet22k'; valid:"),
    ({"dataset": {"image_size": 3}}, "dataset.image_size"),
    ({"model": {"backbone": "resnet181"}}, "model.backbone: unknown backbone 'resnet181'"),
    ({"regime": {"name": "magic"}}, "unknown regime 'magic'; valid:"),
    ({"regime": {"name": "standard", "params": {"eps": 0.1}}}, "regime.params.eps: unknown field"),
    ({"evaluation": {"groups": ["accuracy", "vibes"]}}, "evaluation.groups.1"),
    ({"resources": {"num_workers": 0}}, "resources.num_workers"),
    ({"resources": {"use_gpu": True, "num_workers": 2, "gpus_per_worker": 0.5}}, "fractional GPUs"),
    ({"colour": "red"}, "colour: unknown field"),
]


def test_defaults_validate():
    cfg = TrialConfig.parse({})
    assert cfg.dataset.name == "shapes" and cfg.regime.name == "standard"
    assert cfg.flat()["optim.lr"] == cfg.optim.lr


@pytest.mark.parametrize("data,expected", MISTAKES, ids=[m[1][:30] for m in MISTAKES])
def test_mistake_is_one_line_naming_the_field(data, expected):
    with pytest.raises(ConfigError) as e:
        TrialConfig.parse(data)
    msg = str(e.value)
    assert "\n" not in msg
    assert expected in msg


def test_enough_distinct_mistakes():
    assert len({m[1].split(":")[0] for m in MISTAKES}) >= 8


def test_overrides_parse_yaml_values():
    data = apply_overrides({"optim": {"lr": 1}}, ["optim.lr=0.01", "evaluation.groups=[accuracy]", "seed=3"])
    assert data == {"optim": {"lr": 0.01}, "evaluation": {"groups": ["accuracy"]}, "seed": 3}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["optim.lr"])


def test_config_is_frozen():
    cfg = TrialConfig.parse({})
    with pytest.raises(Exception):
        cfg.optim.lr = 1.0
