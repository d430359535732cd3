"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): ``apgd(model, x, y, eps, ...) -> x_adv``, L-inf and L2, losses ``ce``, ``dlr``
(untargeted Difference-of-Logits-Ratio) and ``dlr_t`` (targeted DLR, the APGD-T of AutoAttack, ``apgd_t``).

One run per restart from a random point of the ε-sphere: the first step has size 2ε, then momentum 0.75
(``x ← x + 0.75·(z − x) + 0.25·(x − x_prev)``), and at checkpoints (every 22 % of the steps, shrinking by 3 %
to at least 6 %) an image halves its step size and restarts from its best point when its loss rose in fewer
than ρ = 75 % of the steps since the last checkpoint, or when neither its step was halved nor its best loss
improved at the last checkpoint. An image counts as broken as soon as one iterate is misclassified; that
iterate is returned. Restarts run only on the images still robust.

The arithmetic, the order of the random draws and the checkpoint schedule are those of torchattacks'
``APGD`` / ``APGDT`` (a port of fra31/auto-attack), with the draws taken from ``generator``: with a generator
seeded like torchattacks' ``seed`` the two return the same images on the same model (tests; CPU generator).
All per-image state is batched tensors on the images' device (no numpy round trips).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from trainables.attacks import norms
from trainables.attacks.gradient import BNMode, attack_mode

Loss = Literal["ce", "dlr", "dlr_t"]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[B,K], [B] -> [B]``: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), logits sorted descending (K ≥ 3)."""
    s, ind = logits.sort(dim=1)
    top_is_y = (ind[:, -1] == y).float()
    zy = logits.gather(1, y[:, None])[:, 0]
    return -(zy - s[:, -2] * top_is_y - s[:, -1] * (1.0 - top_is_y)) / (s[:, -1] - s[:, -3] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B,K], [B], [B] -> [B]``: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2) (K ≥ 4)."""
    s = logits.sort(dim=1).values
    gap = logits.gather(1, y[:, None])[:, 0] - logits.gather(1, target[:, None])[:, 0]
    return -gap / (s[:, -1] - 0.5 * s[:, -3] - 0.5 * s[:, -4] + 1e-12)


def _loss_fn(loss: Loss, target: torch.Tensor | None):
    if loss == "ce":
        return lambda z, y: F.cross_entropy(z, y, reduction="none")
    if loss == "dlr":
        return dlr_loss
    return lambda z, y: dlr_targeted_loss(z, y, target)


def _start(x: torch.Tensor, eps: float, norm: str, g: torch.Generator | None) -> torch.Tensor:
    """A random point on the ε-sphere (L-inf: uniform direction scaled to max-norm ε), clipped to [0,1];
    drawn on the CPU (``g`` a CPU generator) and moved, as the reference does, so any device draws alike."""
    if norm == "linf":
        t = torch.rand(x.shape, generator=g).to(x.device, x.dtype).mul_(2).sub_(1)
        scale = t.flatten(1).abs().max(1).values
    else:
        t = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
        scale = norms.l2_norm(t) + 1e-12
    return (x + eps * t / norms.per_image(scale, x)).clamp(0, 1)


def _project_l2(z: torch.Tensor, x: torch.Tensor, eps: float, tiny_in_min: float) -> torch.Tensor:
    d = z - x
    n = norms.per_image(norms.l2_norm(d), d)
    return (x + d / (n + 1e-12) * torch.clamp(n + tiny_in_min, max=eps)).clamp(0, 1)


def _step(adv, prev, grad, x, eps, size, norm, a):
    """The momentum step of APGD: a projected gradient step of ``size`` (per image), mixed with the last move."""
    move = adv - prev
    if norm == "linf":
        z = torch.min(torch.max(adv + size * grad.sign(), x - eps), x + eps).clamp(0, 1)
        return torch.min(torch.max(adv + (z - adv) * a + move * (1 - a), x - eps), x + eps).clamp(0, 1)
    z = adv + size * grad / (norms.per_image(norms.l2_norm(grad), grad) + 1e-12)
    z = _project_l2(z, x, eps, 0.0)
    return _project_l2(adv + (z - adv) * a + move * (1 - a), x, eps, 1e-12)


def _grad(model, adv, y, fn):
    adv = adv.detach().requires_grad_(True)
    logits = model(adv)
    loss = fn(logits, y)
    (g,) = torch.autograd.grad(loss.sum(), adv)
    return g.detach(), loss.detach(), logits.detach()


def _checkpoints(steps: int) -> list[int]:
    """Iterations (0-based) after which the step-size condition is checked (torchattacks' counter)."""
    k, k_min, decr = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    out, i = [], k - 1
    while i < steps:
        out.append(i)
        k = max(k - decr, k_min)
        i += k
    return out


def _run(model, x, y, eps, norm, steps, fn, rho, g):
    """One APGD run from a random start: ``(still_robust [B] bool, x_adv [B,...])``."""
    adv = _start(x, eps, norm, g)
    grad, loss, logits = _grad(model, adv, y, fn)
    robust = logits.argmax(1) == y
    best_adv, best, best_loss, grad_best = adv.clone(), adv.clone(), loss.clone(), grad.clone()
    size = torch.full((len(x),), 2.0 * eps, device=x.device, dtype=x.dtype)
    prev, checks = adv.clone(), set(_checkpoints(steps))
    increases = torch.zeros(len(x), device=x.device)
    since, last_best, reduced = 0, best_loss.clone(), torch.ones(len(x), dtype=torch.bool, device=x.device)
    for i in range(steps):
        with torch.no_grad():
            new = _step(adv, prev, grad, x, eps, norms.per_image(size, x), norm, 0.75 if i else 1.0)
        prev = adv
        adv = new
        grad, loss_i, logits = _grad(model, adv, y, fn)
        hit = logits.argmax(1) != y
        robust &= ~hit
        best_adv[hit] = adv[hit]
        increases += loss_i > (loss if i else 0.0)  # the reference compares step 0 with an unset (zero) entry
        loss = loss_i
        better = loss_i > best_loss
        best[better], grad_best[better], best_loss[better] = adv[better], grad[better], loss_i[better]
        since += 1
        if i in checks:
            osc = increases <= since * rho
            osc |= ~reduced & (last_best >= best_loss)
            reduced, last_best = osc.clone(), best_loss.clone()
            size[osc] /= 2.0
            adv, grad = torch.where(norms.per_image(osc, x), best, adv), torch.where(norms.per_image(osc, x), grad_best, grad)
            since, increases = 0, torch.zeros_like(increases)
    return robust, best_adv


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf", steps: int = 100,
         restarts: int = 1, loss: Loss = "ce", rho: float = 0.75, bn: BNMode = "keep",
         generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD-CE / APGD-DLR: ``x: [B,C,H,W]`` in [0,1], ``y: [B]`` -> ``x_adv`` in the ε-ball (the first
    misclassified iterate where one was found, else the clean image); restarts run on the still-robust images."""
    if loss == "dlr_t":
        raise ValueError("the targeted DLR loss needs targets: use apgd_t")
    return _attack(model, x, y, eps, norm, steps, rho, bn, generator, [(loss, None)] * restarts)


def apgd_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf", steps: int = 100,
           restarts: int = 1, targets: int = 9, rho: float = 0.75, bn: BNMode = "keep",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD-T: targeted DLR towards the 2nd, 3rd, ... most likely clean class (``targets`` of them, at most
    K − 1), ``restarts`` runs each, every run on the images still robust. Needs K ≥ 4 classes."""
    return _attack(model, x, y, eps, norm, steps, rho, bn, generator,
                   [("dlr_t", t) for t in range(2, targets + 2) for _ in range(restarts)])


def _attack(model, x, y, eps, norm, steps, rho, bn, g, runs) -> torch.Tensor:
    x, adv = x.detach(), x.detach().clone()
    with attack_mode(model, x, bn):
        with torch.no_grad():
            clean = model(x)
        need = max(({"ce": 1, "dlr": 3, "dlr_t": 4}[loss] for loss, _ in runs), default=1)
        if clean.shape[1] < need:
            raise ValueError(f"APGD with the {runs[0][0]} loss needs at least {need} classes, the model has {clean.shape[1]}")
        robust = clean.argmax(1) == y
        ranked = clean.argsort(1, descending=True)
        for loss, target in runs:
            idx = robust.nonzero()[:, 0]
            if not len(idx) or (target is not None and target > clean.shape[1]):
                continue
            tgt = ranked[idx, target - 1] if target is not None else None
            still, found = _run(model, x[idx], y[idx], eps, norm, steps, _loss_fn(loss, tgt), rho, g)
            robust[idx[~still]] = False
            adv[idx[~still]] = found[~still]
    return adv
