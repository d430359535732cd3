"""A float64 model stays float64 through every regime's loss (the equivalence tests run in float64; a ``.float()``
inside a loss would silently round them to float32): ``trainables.regimes.base.full_precision``."""
from __future__ import annotations

import pytest
import torch

from trainables.config import TrialConfig
from trainables.loop import build_model_and_regime
from trainables.regimes.base import full_precision


def test_full_precision_promotes_half_and_keeps_float64():
    assert full_precision(torch.zeros(2, dtype=torch.float16)).dtype == torch.float32
    assert full_precision(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert full_precision(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("regime,params", [
    ("standard", {}), ("fgsm_at", {"eps": 0.03}), ("pgd_at", {"eps": 0.03, "steps": 2}),
    ("topgap", {"k_frac": 0.25, "lam": 0.1}), ("lipschitz", {}), ("art", {"steps": 1}),
])
def test_float64_model_gives_a_float64_loss_and_gradients(regime, params):
    cfg = TrialConfig.parse({"regime": {"name": regime, "params": params}, "model": {"backbone": "smallcnn"},
                             "dataset": {"name": "shapes", "image_size": 16}})
    torch.manual_seed(0)
    model, reg = build_model_and_regime(cfg, 4, 3)
    model = model.double()
    x, y = torch.rand(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    reg.start_epoch(1, 2)
    loss, _ = reg.loss(model, x, y)
    assert loss.dtype == torch.float64
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float64 for g in grads)
