"""Fixed-budget attacks family: ``robust/<attack>`` (accuracy vs labels), ``robust/<attack>_agree``
(prediction unchanged; misclassified images are attacked again with their clean prediction as the label,
Top-GAP's protocol) and ``robust/<attack>_top5`` where ``metrics/keys.py`` has that row.

Attacks: ``fgsm``, ``pgd``, ``pgd_l2`` (gradient.py); ``apgd_ce``, ``apgd_dlr`` (APGD, apgd.py), ``square``
(gradient-free, square.py), ``autoattack`` / ``autoattack_l2`` (the standard sequence, autoattack.py; each stage
on the images still robust), with ``evaluation.robust.apgd_steps``, ``square_queries``, ``autoattack_version``.

Evaluation attacks are a registry (``EVAL_ATTACKS``): ``@register_eval_attack("pgd")`` on a function
``(ctx, victim, generator) -> EvalAttack`` (``call(x, y) -> x_adv`` and its effective settings);
``evaluation.robust.attacks`` names them. Attacks run on the eval-mode model (running BN statistics), autocast off; they
differentiate ``evaluation.robust.victim`` (default ``folded``: a frozen BN-folded copy, channels_last on GPU;
``cpu_plan``: opt-in per-layer CPU plan; ``model``: the model itself — the same function each) and the accuracies
are read from the model itself. Each attack (and its re-attack for ``_agree``)
draws its random start from its own generator, so ``robust/pgd`` alone equals that of the full evaluation.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch

from trainables.evaluation.base import Batch, EvalContext, Family, register_family
from trainables.metrics.keys import KEYS
from trainables.registry import Registry

EVAL_ATTACKS: Registry[Callable[..., Callable]] = Registry("evaluation attack")
register_eval_attack = EVAL_ATTACKS.register
SUFFIXES = ("", "_agree", "_top5")


@dataclass(frozen=True)
class EvalAttack:
    call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # x [B,C,H,W] in [0,1], y [B] -> x_adv
    settings: dict[str, Any]                                     # effective values (MLflow params)


def linf_eps(ctx: EvalContext) -> float:
    return ctx.cfg.evaluation.robust.linf_eps(ctx.cfg.dataset.image_size)


def _pgd(ctx: EvalContext, victim, g, eps: float, norm: str):
    from trainables.attacks import pgd

    rc = ctx.cfg.evaluation.robust
    alpha = rc.pgd_step_ratio * eps / rc.pgd_steps
    return EvalAttack(lambda x, y: pgd(victim, x, y, eps, steps=rc.pgd_steps, alpha=alpha, norm=norm,
                                       random_start=rc.random_start, generator=g),
                      {"eps": eps, "steps": rc.pgd_steps, "alpha": alpha, "random_start": rc.random_start})


@register_eval_attack("fgsm")
def fgsm_attack(ctx: EvalContext, victim, g):
    from trainables.attacks import fgsm

    eps = linf_eps(ctx)
    return EvalAttack(lambda x, y: fgsm(victim, x, y, eps), {"eps": eps})


@register_eval_attack("pgd")
def pgd_attack(ctx: EvalContext, victim, g):
    return _pgd(ctx, victim, g, linf_eps(ctx), "linf")


@register_eval_attack("pgd_l2")
def pgd_l2_attack(ctx: EvalContext, victim, g):
    return _pgd(ctx, victim, g, ctx.cfg.evaluation.robust.eps_l2, "l2")


def _seed(g: torch.Generator) -> int:
    """A seed for the attacks that take CPU generators / a seed (APGD, Square, AutoAttack) from the key's stream."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device))


def _apgd(ctx: EvalContext, victim, g, loss: str):
    from trainables.attacks.apgd import apgd

    rc, eps = ctx.cfg.evaluation.robust, linf_eps(ctx)
    call = lambda x, y: apgd(victim, x, y, eps, steps=rc.apgd_steps, restarts=rc.apgd_restarts,  # noqa: E731
                             loss=loss, generator=torch.Generator().manual_seed(_seed(g)))
    return EvalAttack(call, {"eps": eps, "steps": rc.apgd_steps, "restarts": rc.apgd_restarts, "loss": loss})


@register_eval_attack("apgd_ce")
def apgd_ce_attack(ctx: EvalContext, victim, g):
    return _apgd(ctx, victim, g, "ce")


@register_eval_attack("apgd_dlr")
def apgd_dlr_attack(ctx: EvalContext, victim, g):
    return _apgd(ctx, victim, g, "dlr")


@register_eval_attack("square")
def square_attack(ctx: EvalContext, victim, g):
    from trainables.attacks.square import square

    rc, eps = ctx.cfg.evaluation.robust, linf_eps(ctx)
    call = lambda x, y: square(victim, x, y, eps, queries=rc.square_queries,  # noqa: E731
                               generator=torch.Generator().manual_seed(_seed(g)))
    return EvalAttack(call, {"eps": eps, "queries": rc.square_queries})


def _autoattack(ctx: EvalContext, victim, g, norm: str):
    from trainables.attacks.autoattack import VERSIONS, autoattack

    rc = ctx.cfg.evaluation.robust
    eps = linf_eps(ctx) if norm == "linf" else rc.eps_l2
    call = lambda x, y: autoattack(victim, x, y, eps, norm=norm, version=rc.autoattack_version,  # noqa: E731
                                   steps=rc.apgd_steps, queries=rc.square_queries, seed=_seed(g))
    return EvalAttack(call, {"eps": eps, "version": rc.autoattack_version, "stages": ",".join(VERSIONS[rc.autoattack_version]),
                             "steps": rc.apgd_steps, "queries": rc.square_queries})


for _name, _norm in (("autoattack", "linf"), ("autoattack_l2", "l2")):  # robust/autoattack, robust/autoattack_l2
    register_eval_attack(_name)(functools.partial(_autoattack, norm=_norm))


def victim(ctx: EvalContext) -> torch.nn.Module:
    """What the attacks differentiate: ``evaluation.robust.victim`` (``models/inference.py``)."""
    from trainables.models.inference import attack_victim

    return ctx.shared("victim", lambda: attack_victim(ctx.model, ctx.cfg.evaluation.robust.victim))


def build_attack(ctx: EvalContext, name: str, stream: str = "labels") -> EvalAttack:
    """The attack ``name`` with its own random stream (``labels``: vs the labels; ``agree``: the re-attack
    of misclassified images), so that computing one key never shifts another key's random numbers."""
    key = f"attack/{name}/{stream}"
    return ctx.shared(key, lambda: EVAL_ATTACKS.get(name)(ctx, victim(ctx), ctx.generator(key)))


@register_family("attacks")
class Attacks(Family):
    group = "robustness"
    needs = ("logits", "adv")

    @classmethod
    def all_keys(cls) -> tuple[str, ...]:
        return tuple(k for a in EVAL_ATTACKS.names() for s in SUFFIXES if (k := f"robust/{a}{s}") in KEYS)

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        return tuple(k for a in cfg.evaluation.robust.attacks for s in SUFFIXES if (k := f"robust/{a}{s}") in KEYS)

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        from trainables.metrics.robustness import agree, correct, topk_correct

        x, y, clean = batch["image"], batch["label"], batch.need("logits")
        pred, out = clean.argmax(1), {}
        for name in self._attacks():
            keys = {f"robust/{name}{s}" for s in SUFFIXES} & self.want
            with torch.no_grad():
                adv = self.ctx.model(batch.need(f"adv:{name}"))
            out[f"robust/{name}"] = correct(adv, y)
            out[f"robust/{name}_top5"] = topk_correct(adv, y, 5)
            if f"robust/{name}_agree" in keys:
                out[f"robust/{name}_agree"] = agree(self._same(name, x, pred, y, adv), clean)
        return {k: v for k, v in out.items() if k in self.want}

    def _attacks(self) -> list[str]:
        return [a for a in EVAL_ATTACKS.names() if any(f"robust/{a}{s}" in self.want for s in SUFFIXES)]

    @torch.no_grad()
    def _same(self, name, x, pred, y, adv_logits) -> torch.Tensor:
        """Logits under attack, misclassified images attacked again against their clean prediction."""
        same, wrong = adv_logits.clone(), (pred != y).nonzero()[:, 0]
        if len(wrong):
            with torch.enable_grad():
                x_w = build_attack(self.ctx, name, "agree").call(x[wrong], pred[wrong])
            same[wrong] = self.ctx.model(x_w)
        return same

    def settings(self) -> dict[str, Any]:
        rc = self.ctx.cfg.evaluation.robust
        out: dict[str, Any] = {"victim": rc.victim}
        for name in self._attacks():
            out |= {f"{name}.{k}": v for k, v in build_attack(self.ctx, name).settings.items()}
        return out
