"""The Lipschitz paper's attack family (lipschitz-adversarial-explanations §III-A, §III-G; ALGORITHMS.md
§5.2, §5.4): alternate "follow the loss gradient" and "shrink the perturbation" steps until a goal holds,
keeping the smallest successful perturbation.

One skeleton, ``search``, and one hook, ``follow(logits, y, delta) -> Bool[B]`` (True = the goal is not met
yet: step along the gradient; False = met: step along −δ). Members:

- ``l2_ball`` (L2 adversarial training, authors' code): follow while RMSE(δ) < ε; returns the last iterate.
- ``l2min`` (L2,min): follow while the image is still correctly classified; returns the smallest-RMSE
  misclassified iterate, or the clean image if none (code detail the paper omits).
- ``minimal_distance`` (Algorithm 1, for ARA): goal ``g_adv`` (s_t − max_{j≠t} s_j < 0, eq. 2) or ``g_btr``
  (s_t < 1/V, eq. 4); returns each image's minimal successful RMSE.
- ``trainables.attacks.explanation``: g_explain± (follow while RMSE(δ) < ρ).

Two step rules (``rule``):
- ``"ramp"`` (the authors' code, default): direction = ∇CE (or −δ), scaled to unit RMSE, optionally an EMA
  momentum ``m ← μm + (1−μ)dir``; step n has size ``total·(S−n)/(S(S+1)/2)`` (sizes sum to ``total``). No
  clipping to [0,1] unless ``clip``.
- ``"sgd"`` (paper Algorithm 1): Δ = η·∇s_t/‖∇s_t‖₂ while the goal is unmet, else 2δ; SGD with momentum μ
  and learning rate ``lr`` on δ; the model sees clip_[0,1](x + δ). ∇CE = −∇s_t/s_t has the same direction
  as −∇s_t, so both rules use ∇CE.

Distances are RMSE of the perturbation the model saw. Gradients: summed CE w.r.t. the input only, inside
``attack_mode`` (frozen parameters, autocast off, BN mode ``bn``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from trainables.attacks import norms
from trainables.attacks.gradient import BNMode, attack_mode, ce_grad

log = logging.getLogger(__name__)
Follow = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Goal = Literal["adv", "btr"]
Rule = Literal["ramp", "sgd"]


@dataclass
class SearchResult:
    x_adv: torch.Tensor          # [B, ...] returned images (best successful iterate, or the last one)
    rmse: torch.Tensor           # [B] RMSE of x_adv − x (inf where track_best found no success)
    first_success: torch.Tensor  # [B] int64, first step whose iterate met the goal (−1: never)
    last_rmse: torch.Tensor      # [B] RMSE of the last iterate (a lower bound where the goal was never met)


class RampRule:
    """The authors' code: RMSE-normalised direction, EMA momentum, ramped step sizes summing to ``total``."""

    def __init__(self, total: float, steps: int, momentum: float = 0.0):
        self.sizes, self.momentum, self.buf = norms.ramp_sizes(total, steps), momentum, None

    def __call__(self, n: int, follow: torch.Tensor, g: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        d = norms.rmse_direction(torch.where(norms.per_image(follow, g), g, -delta))
        if self.momentum > 0:
            self.buf = d.mul_(1 - self.momentum) if self.buf is None else self.buf.mul_(self.momentum).add_(d, alpha=1 - self.momentum)
            d = self.buf
        return delta.add(d, alpha=self.sizes[n])


class SGDRule:
    """Paper Algorithm 1: SGD(lr, momentum) on δ with Δ = η·(−∇s_t direction)/‖·‖₂ or the shrink gradient 2δ."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, eta: float = 0.55):
        self.lr, self.momentum, self.eta, self.buf = lr, momentum, eta, None

    def __call__(self, n: int, follow: torch.Tensor, g: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        step = torch.where(norms.per_image(follow, g), norms.l2_step(g, self.eta), -2 * delta)  # = −Δ
        self.buf = step if self.buf is None else self.buf.mul_(self.momentum).add_(step)
        return delta.add(self.buf, alpha=self.lr)


def search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, follow: Follow, step_rule, steps: int, *,
           track_best: bool, clip: bool = False, ascend: bool = True, bn: BNMode = "keep") -> SearchResult:
    """The shared loop. ``x: [B,C,H,W]``, ``y: [B]`` (true or target class), ``ascend``: step along +∇CE(y)
    (attack) or −∇CE(y) (encourage ``y``, explanations). With ``track_best`` one extra evaluation follows the
    last step and the smallest-RMSE iterate with ``follow == False`` is returned (x itself if that holds at
    δ = 0); otherwise the last iterate."""
    x = x.detach()
    delta = torch.zeros_like(x)
    first = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    best = x.clone()
    best_r = torch.full((x.shape[0],), float("inf"), device=x.device)
    with attack_mode(model, x, bn):
        for n in range(steps + int(track_best)):
            xa = (x + delta).clamp_(0, 1) if clip else x + delta
            if n == steps:  # the extra evaluation: a forward pass only
                with torch.no_grad():
                    ok = follow(model(xa), y, delta)
            else:
                g, logits = ce_grad(model, xa, y)
                ok = follow(logits, y, delta)
            first = torch.where(~ok & (first < 0), n, first)
            if track_best:
                r = norms.rmse(xa - x)
                better = ~ok & (r < best_r)
                best = torch.where(norms.per_image(better, x), xa, best)
                best_r = torch.where(better, r, best_r)
            if n < steps:
                delta = step_rule(n, ok, g if ascend else g.neg_(), delta)
    if track_best:
        return SearchResult(best, best_r, first, norms.rmse(xa - x))
    xa = (x + delta).clamp_(0, 1) if clip else x + delta
    r = norms.rmse(xa - x)
    return SearchResult(xa, r, first, r)


# ---- members ------------------------------------------------------------------------------------------
def l2_ball(model, x, y, eps: float = 0.01, steps: int = 7, *, schedule: Literal["ramp", "constant"] = "ramp",
            clip: bool = False, bn: BNMode = "keep") -> torch.Tensor:
    """L2 adversarial training images (§5.2, code): ∇CE while RMSE(δ) < ε, else −δ; ε in RMSE.

    ``schedule="ramp"``: the code's step sizes (sum ε, so RMSE(δ) ≤ ε); ``"constant"``: the paper's ε/steps.
    """
    def follow(logits, y, delta):
        return norms.rmse(delta) < eps

    rule = RampRule(eps, steps)
    if schedule == "constant":
        rule.sizes = [eps / steps] * steps
    return search(model, x, y, follow, rule, steps, track_best=False, clip=clip, bn=bn).x_adv


def l2min(model, x, y, eps: float = 0.1, steps: int = 7, *, schedule: Literal["ramp", "constant"] = "ramp",
          clip: bool = False, bn: BNMode = "keep") -> torch.Tensor:
    """L2,min training images (§5.2, code): ∇CE while still correct, else −δ; returns the smallest-RMSE
    misclassified iterate (incl. one extra evaluation after the last step) or the clean image if none."""
    def follow(logits, y, delta):
        return logits.argmax(1) == y

    rule = RampRule(eps, steps)
    if schedule == "constant":
        rule.sizes = [eps / steps] * steps
    return search(model, x, y, follow, rule, steps, track_best=True, clip=clip, bn=bn).x_adv


def goal_unmet(goal: Goal) -> Follow:
    """``follow`` of Algorithm 1: True while g_adv (eq. 2) or g_btr (eq. 4, s_t < 1/V) does not hold."""
    def adv(logits, y, delta):  # softmax is monotone: compare logits (no underflow at high confidence)
        y_t = logits.gather(1, y[:, None])[:, 0]
        return y_t >= logits.scatter(1, y[:, None], float("-inf")).amax(1)

    def btr(logits, y, delta):
        return logits.softmax(1).gather(1, y[:, None])[:, 0] >= 1.0 / logits.shape[1]

    return adv if goal == "adv" else btr


def minimal_distance(model, x, y, goal: Goal = "adv", *, steps: int = 450, rule: Rule = "ramp",
                     total: float | None = None, momentum: float = 0.9, lr: float = 0.01, eta: float = 0.55,
                     clip: bool | None = None, bn: BNMode = "keep") -> SearchResult:
    """Algorithm 1: each image's minimal RMSE at which ``goal`` holds (``rmse``; 0 if it holds at δ = 0, inf
    if never reached). ``rule="ramp"`` (code, ``calculate-ara``): ``total`` defaults to 20·steps/450 (the
    code's 20 at 450 steps, same first step 0.0887), no clipping; ``rule="sgd"`` (paper): lr 0.01, momentum
    0.9, η 0.55, clipping. Images whose first success comes after step S/2 are logged (the code raises)."""
    if rule == "ramp":
        step_rule = RampRule(20.0 * steps / 450 if total is None else total, steps, momentum)
    else:
        step_rule = SGDRule(lr, momentum, eta)
    res = search(model, x, y, goal_unmet(goal), step_rule, steps, track_best=True,
                 clip=(rule == "sgd") if clip is None else clip, bn=bn)
    late = int(((res.first_success < 0) | (res.first_success > steps // 2)).sum())
    if late:
        log.warning("minimal_distance(%s): %d of %d images first met the goal after step %d or never; "
                    "increase steps or total", goal, late, len(x), steps // 2)
    return res
