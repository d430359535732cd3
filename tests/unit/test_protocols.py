"""evaluation.preset / evaluation.protocol (trainables/protocols.py): fast = the field defaults, paper = the
protocol's values under the written ones, one-line errors, and every real-dataset config names its protocol."""
from pathlib import Path

import pytest
import yaml

from trainables.config import EvalConfig, TrialConfig
from trainables.errors import ConfigError
from trainables.protocols import PROTOCOLS

CONFIGS = Path(__file__).resolve().parents[2] / "sweeps" / "configs"


def _eval(**evaluation) -> EvalConfig:
    return TrialConfig.parse({"evaluation": evaluation}).evaluation


def test_fast_is_the_field_defaults():
    assert _eval() == _eval(preset="fast") == EvalConfig()
    # naming a protocol under fast documents it and changes nothing
    assert _eval(preset="fast", protocol="topgap").model_dump(exclude={"protocol"}) == EvalConfig().model_dump(exclude={"protocol"})


def test_topgap_protocol_is_foolbox_pgd40_at_one_over_255():
    r = _eval(preset="paper", protocol="topgap").robust
    step = r.pgd_step_ratio * r.linf_eps(224) / r.pgd_steps
    assert (r.pgd_steps, r.linf_eps(224), r.random_start) == (40, 1 / 255, True)
    assert step == pytest.approx((1 / 255) / 30)  # Foolbox LinfPGD rel_stepsize 0.01/0.3 (ALGORITHMS.md §2.3)
    r20 = _eval(preset="paper", protocol="topgap_cifar10").robust
    assert (r20.pgd_steps, r20.linf_eps(32)) == (20, 8 / 255)
    assert r20.pgd_step_ratio * r20.linf_eps(32) / r20.pgd_steps == pytest.approx((8 / 255) / 30)


def test_nag_and_art_and_lipschitz_values():
    fm = _eval(preset="paper", protocol="nag_fmnist")
    assert fm.robust.pgd_step_ratio * 0.1 / fm.robust.pgd_steps == pytest.approx(0.01)  # step ε/10 over 40 steps
    assert fm.explain.noise_sigmas == (0.01, 0.03, 0.05, 0.07, 0.09, 0.1, 0.15, 0.2)
    assert len(fm.explain.road_fractions) == 20 and fm.explain.road_fractions[0] == 0.01
    assert fm.explain.road_fractions[-1] == 0.96 and fm.explain.road_baseline == "first"
    inet = _eval(preset="paper", protocol="nag_imagenette").robust
    assert inet.pgd_step_ratio * inet.linf_eps(224) / inet.pgd_steps == pytest.approx(2 / 255)  # step 2/255
    art = _eval(preset="paper", protocol="art").explain
    assert (art.ifia_steps, art.ifia_step, art.attr_topk, art.ifia_ig_steps, art.ig_steps, art.attr_images) == (
        50, 1 / 255, 100, 100, 101, 1000)
    lip = _eval(preset="paper", protocol="lipschitz").robust
    assert (lip.ara_images, lip.ara_steps) == (1000, 450)


def test_written_values_win_over_the_preset():
    e = _eval(preset="paper", protocol="topgap", robust={"pgd_steps": 20}, num_images=64)
    assert (e.robust.pgd_steps, e.num_images) == (20, 64)
    assert e.robust.linf_eps(224) == 1 / 255 and e.robust.pgd_step_ratio == pytest.approx(40 / 30)  # the rest stays


@pytest.mark.parametrize("evaluation, words", [
    ({"preset": "paper"}, "needs evaluation.protocol"),
    ({"preset": "paper", "protocol": "topgapp"}, "unknown evaluation.protocol 'topgapp'"),
    ({"preset": "slow"}, "preset"),
])
def test_one_line_errors(evaluation, words):
    with pytest.raises(ConfigError) as e:
        _eval(**evaluation)
    assert words in str(e.value) and "\n" not in str(e.value).strip()


def test_every_protocol_validates():
    for name in PROTOCOLS.names():
        e = _eval(preset="paper", protocol=name)
        assert e.protocol == name and e != EvalConfig()


def test_real_dataset_configs_use_the_paper_preset():
    from trainables.data.base import DATASETS

    real = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if not DATASETS.get(spec["base"]["dataset"]["name"]).needs_root:
            continue  # embedded data: the CPU-sized fast preset
        ev = spec["base"]["evaluation"]
        assert ev.get("preset") == "paper" and ev.get("protocol") in PROTOCOLS.names(), path.name
        real.append(path.name)
    assert len(real) >= 8
