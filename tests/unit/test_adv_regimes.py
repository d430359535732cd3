"""Adversarial-training regimes: build, step (finite loss, backward), params validate, ε-ball respected."""
import pytest
import torch

from trainables.config import TrialConfig
from trainables.errors import ConfigError
from trainables.models import build_classifier
from trainables.regimes import REGIMES

CASES = [("fgsm_at", {}), ("fgsm_at", {"eps": 2 / 255, "adv_weight": 1.0}), ("pgd_at", {}),
         ("pgd_at", {"norm": "l2", "steps": 3, "clean_weight": 0.5}), ("pgd_at", {"bn": "eval", "random_start": False})]


@pytest.mark.parametrize("name,params", CASES)
def test_regime_builds_and_steps(name, params):
    regime = REGIMES.get(name)(params)
    model = regime.build_model(build_classifier("smallcnn", 4)).train()
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 4, (6,))
    loss, logs = regime.loss(model, x, y)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert {"train/acc", "train/adv_acc"} <= set(logs) and all(0 <= float(v) <= 1 for v in logs.values())


@pytest.mark.parametrize("params,field", [({"eps": 0}, "eps"), ({"norm": "l3"}, "norm"), ({"stepz": 3}, "stepz"),
                                          ({"bn": "frozen"}, "bn")])
def test_pgd_at_params_validate(params, field):
    with pytest.raises(ConfigError, match=f"regime.params.{field}"):
        TrialConfig.parse({"regime": {"name": "pgd_at", "params": params}})


def test_fgsm_at_params_validate():
    with pytest.raises(ConfigError, match="regime.params.adv_weight"):
        TrialConfig.parse({"regime": {"name": "fgsm_at", "params": {"adv_weight": 2}}})
    cfg = TrialConfig.parse({"regime": {"name": "fgsm_at", "params": {"eps": 0.01}}})
    assert REGIMES.get(cfg.regime.name)(cfg.regime.params, cfg).params.eps == 0.01


def test_pgd_at_inner_attack_stays_in_ball():
    regime = REGIMES.get("pgd_at")({"eps": 4 / 255, "steps": 3})
    model = build_classifier("smallcnn", 4).train()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,))
    adv = regime.attack(model, x, y)
    # + 1e-6: x + δ and adv - x are float32 on pixels in [0, 1], each rounding by <= 6e-8 (half an ulp of 1)
    assert float((adv - x).abs().max()) <= 4 / 255 + 1e-6 and regime.eps == 4 / 255
    assert REGIMES.get("pgd_at")({"norm": "l2"}).eps == 0.5


def test_eps_scale_ramps_linearly_over_the_warmup_share():
    from trainables.regimes.base import eps_scale

    assert [eps_scale(e, 8, 0.5) for e in range(8)] == [0.25, 0.5, 0.75, 1, 1, 1, 1, 1]
    assert [eps_scale(e, 10, 0.25) for e in range(4)] == [1 / 3, 2 / 3, 1, 1]  # ceil(2.5) = 3 warm-up epochs
    assert eps_scale(0, 8, 0.0) == 1 and eps_scale(0, 0, 0.5) == 1  # off; no schedule known -> full ε


@pytest.mark.parametrize("name", ["pgd_at", "fgsm_at", "smooth_at"])
def test_eps_warmup_scales_the_training_attack(name):
    regime = REGIMES.get(name)({"eps": 8 / 255, "eps_warmup": 0.5})
    model = regime.build_model(build_classifier("smallcnn", 4)).train()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,))
    # train/eps is a Python float (ε × a warm-up fraction): approx's default rel 1e-6 covers the float ops
    assert regime.epoch_logs()["train/eps"] == pytest.approx(8 / 255)  # built at full ε (no loop, e.g. bench)
    regime.start_epoch(0, 8)  # first of 4 warm-up epochs: ε/4
    assert regime.epoch_logs()["train/eps"] == pytest.approx(2 / 255)
    # + 1e-6 as above: float32 rounding of x + δ on pixels in [0, 1], with margin
    assert float((regime.attack(model, x, y) - x).abs().max()) <= 2 / 255 + 1e-6
    regime.start_epoch(5, 8)  # after the warm-up, and after a resume into a later epoch: full ε
    assert regime.epoch_logs()["train/eps"] == pytest.approx(8 / 255)
