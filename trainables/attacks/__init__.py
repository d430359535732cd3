"""Adversarial attacks in pixel space, one module per family; one call shape
``attack(model, x, y, ...) -> x_adv`` with ``x: [B,C,H,W]`` in [0,1] (normalisation lives in the model).

- ``norms``: norms (L2, RMSE), projections, step directions, the ramped step schedule.
- ``gradient``: FGSM, PGD (L-inf, L2), the shared ``attack_mode`` (frozen parameters, autocast off, BN mode).
- ``minimal``: the Lipschitz paper's search family — L2 / L2,min training attacks, Algorithm 1 (ARA).
- ``explanation``: g_explain± adversarial explanations.
- ``generators``: the registry of training-time generators regimes compose (``make_adversarial``).
"""
from trainables.attacks.gradient import attack_mode, fgsm, pgd, pgd_l2
from trainables.attacks.generators import GENERATORS, build_generator, make_adversarial, validate_generator
from trainables.attacks.minimal import l2_ball, l2min, minimal_distance

__all__ = ["attack_mode", "fgsm", "pgd", "pgd_l2", "GENERATORS", "build_generator", "make_adversarial",
           "validate_generator", "l2_ball", "l2min", "minimal_distance"]
