"""APGD, Square and AutoAttack (trainables/attacks/apgd.py, square.py, autoattack.py) against torchattacks on a
small trained CNN (tests/unit/trained_tiny.py), 64 test images, the same seeds: robust accuracy within 1 image
in 64 for every component and for the full standard sequence, L-inf and L2; AutoAttack <= PGD-10."""
import pytest
import torch

from trainables.attacks import pgd
from trainables.attacks.apgd import _checkpoints, apgd, apgd_t, dlr_loss, dlr_targeted_loss
from trainables.attacks.autoattack import autoattack
from trainables.attacks.square import p_selection, square
from trained_tiny import trained

EPS = {"linf": 8 / 255, "l2": 1.0}
TA_NORM = {"linf": "Linf", "l2": "L2"}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)  # the shared VM: one thread is as fast and does not fight the other processes
    return trained()


def _acc(m, adv, y) -> float:
    with torch.no_grad():
        return float((m(adv).argmax(1) == y).float().mean())


def _in_ball(adv, x, eps, norm):
    d = (adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
    return bool((size <= eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1)


def test_dlr_losses_hand_values():
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0, 2.0]])
    # y = 0 is top: −(4 − 3) / (4 − 2); y = 2: −(3 − 4) / (4 − 2)
    assert dlr_loss(z, torch.tensor([0])).item() == pytest.approx(-0.5)
    assert dlr_loss(z, torch.tensor([2])).item() == pytest.approx(0.5)
    # targeted: −(z_0 − z_4) / (4 − (2 + 1)/2)
    assert dlr_targeted_loss(z, torch.tensor([0]), torch.tensor([4])).item() == pytest.approx(-2 / 2.5)


def test_schedules():
    assert _checkpoints(100) == [21, 40, 56, 69, 79, 86, 92, 98]  # k = 22, 19, 16, ... (−3 per check, min 6)
    assert _checkpoints(10) == list(range(1, 10))  # k = 2, then 1 (min 1)
    assert [p_selection(0.8, i, 10000) for i in (10, 11, 51, 8001)] == [0.8, 0.4, 0.2, 0.8 / 512]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_components_match_torchattacks(tiny, norm):
    import torchattacks as ta

    m, x, y = tiny
    eps, tn, g = EPS[norm], TA_NORM[norm], lambda: torch.Generator().manual_seed(0)
    pairs = {
        "apgd_ce": (apgd(m, x, y, eps, norm=norm, steps=10, loss="ce", generator=g()),
                    ta.APGD(m, norm=tn, eps=eps, steps=10, loss="ce", seed=0)(x, y)),
        "apgd_dlr": (apgd(m, x, y, eps, norm=norm, steps=10, loss="dlr", generator=g()),
                     ta.APGD(m, norm=tn, eps=eps, steps=10, loss="dlr", seed=0)(x, y)),
        "apgd_t": (apgd_t(m, x, y, eps, norm=norm, steps=10, targets=5, generator=g()),
                   ta.APGDT(m, norm=tn, eps=eps, steps=10, n_classes=6, seed=0)(x, y)),
        "square": (square(m, x, y, eps, norm=norm, queries=300, generator=g()),
                   ta.Square(m, norm=tn, eps=eps, n_queries=300, seed=0)(x, y)),
    }
    clean = _acc(m, x, y)
    for name, (ours, peer) in pairs.items():
        assert _in_ball(ours, x, eps, norm), name
        a, b = _acc(m, ours, y), _acc(m, peer, y)
        assert abs(a - b) <= 1 / 64 + 1e-9, (name, a, b)
        assert a < clean, (name, a, clean)  # the attack does something on this model


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_autoattack_matches_torchattacks_and_beats_pgd(tiny, norm):
    import torchattacks as ta

    m, x, y = tiny
    eps = EPS[norm]
    stages = []
    ours = autoattack(m, x, y, eps, norm=norm, steps=10, queries=1000, seed=0, on_stage=lambda n, r: stages.append((n, r)))
    peer = ta.AutoAttack(m, norm=TA_NORM[norm], eps=eps, n_classes=6, seed=0)
    peer._autoattack.attacks[-1].n_queries = 1000  # the same Square budget (5000 by default)
    a, b = _acc(m, ours, y), _acc(m, peer(x, y), y)
    assert abs(a - b) <= 1 / 64 + 1e-9, (a, b)
    assert _in_ball(ours, x, eps, norm)
    assert [s for s, _ in stages] == ["apgd-ce", "apgd-t", "fab-t", "square"][:len(stages)]
    assert stages[-1][1] == round(a * len(y))  # per-stage robust counts end at the returned robust accuracy
    p = _acc(m, pgd(m, x, y, eps, steps=10, norm=norm), y)
    assert a <= p, (a, p)


def test_restarts_and_stages_only_attack_robust_images(tiny):
    """Misclassified images come back untouched; a second restart never un-breaks an image."""
    m, x, y = tiny
    with torch.no_grad():
        wrong = m(x).argmax(1) != y
    for adv in (apgd(m, x, y, EPS["linf"], steps=5, restarts=2, generator=torch.Generator().manual_seed(1)),
                square(m, x, y, EPS["linf"], queries=50, restarts=2, generator=torch.Generator().manual_seed(1))):
        assert torch.equal(adv[wrong], x[wrong])
    one = _acc(m, apgd(m, x, y, EPS["linf"], steps=5, restarts=1, generator=torch.Generator().manual_seed(1)), y)
    two = _acc(m, apgd(m, x, y, EPS["linf"], steps=5, restarts=2, generator=torch.Generator().manual_seed(1)), y)
    assert two <= one
