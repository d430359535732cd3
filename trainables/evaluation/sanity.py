"""Sanity family (robustness group): gradient-masking checks per trial (Carlini et al. 2019, "On Evaluating
Adversarial Robustness", §5; Athalye et al. 2018). A model that masks gradients (saturating or
non-differentiable layers, shattered loss surfaces) looks robust to PGD without being robust; each check
compares attacks whose ordering is known for an honestly evaluated model:

=============  ====================================================================  =========================
check          flagged when (accuracies on the same images, ``tol`` = max(``params.tol``, 2/n))  why
=============  ====================================================================  =========================
pgd_vs_fgsm    PGD-10 > FGSM + tol                                                    iterating did not help
eps_growth     acc(ε) > tol and acc(``eps_factor``·ε) > acc(ε) − tol                   accuracy not falling with ε
unbounded      acc(ε = ``huge_eps``, L-inf) > ``huge_max`` (nested radii, below)         an unbounded attack fails
more_steps     PGD-``strong_steps`` × ``strong_restarts`` > PGD-10 + tol               more effort, weaker attack
square         Square (gradient-free) < PGD-10 − tol                                  gradients mislead PGD
autoattack     PGD-10 − AutoAttack > ``aa_gap`` (default 0.10)                        PGD far from the truth
=============  ====================================================================  =========================

The PGD runs of ``eps_growth`` / ``unbounded`` start at the clean image (no random start: a random point of a
huge ball is noise, which would pass the check without any gradient). An image counts as robust at ``huge_eps``
only if it also resisted the PGD runs at ε and ``eps_factor``·ε: their adversarial images lie in the larger
ball too, and a fixed-step PGD-10 overshoots there (step 2.5·ε/10 = 0.25 at ε = 1; measured on a standard
``smallcnn``: 0 of 16 images left at 4ε, 3 of 16 by PGD-10 at ε = 1 alone, a false flag). FGSM, PGD-10 and AutoAttack are the
evaluation's own attacks (``adv:<attack>`` work, shared with the attacks family when it runs them); the rest
are run here on the first ``params.images`` images of the subset (per rank). Cost at the defaults: about
1 + 10 + 10 + 10 + 100 gradient passes, 200 Square queries and one AutoAttack (``evaluation.robust``'s settings)
on 16 images (the unit tests use 32 images and 300 queries).

Output: the metric ``sanity/flags`` (number of flagged checks), the MLflow tags ``arx.sanity.<check>``
(``ok`` / ``FLAG`` and the numbers behind it) and ``arx.sanity.flagged`` (the flagged checks, or ``none``);
the report's "Robustness sanity" section lists flagged trials and can exclude them from the fronts.
"""
from __future__ import annotations

from typing import Callable

import torch
from pydantic import Field

from trainables.evaluation.base import Batch, Family, FamilyParams, nan_like, register_family
from trainables.registry import Registry

CHECKS: Registry[Callable] = Registry("sanity check")
TAG = "sanity"


class SanityParams(FamilyParams):
    images: int = Field(16, ge=1, description="images of the subset the checks attack (per rank)")
    tol: float = Field(0.05, ge=0, le=1, description="accuracy tolerance of the comparisons (fraction; at least "
                                                       "2 images' worth of the checked images)")
    eps_factor: float = Field(4.0, gt=1, description="the larger ε of eps_growth, in multiples of the eval ε")
    huge_eps: float = Field(1.0, gt=0, le=1, description="L-inf ε of the unbounded check (1 = the whole image)")
    huge_max: float = Field(0.1, ge=0, le=1, description="highest accuracy the unbounded attack may leave")
    strong_steps: int = Field(100, ge=1, description="PGD steps of the more_steps check")
    strong_restarts: int = Field(1, ge=1, description="random restarts of the more_steps check")
    square_queries: int = Field(200, ge=1, description="queries of the square check's Square attack")
    aa_gap: float = Field(0.10, ge=0, le=1, description="largest PGD-10 − AutoAttack gap not flagged")
    autoattack: bool = Field(True, description="run the autoattack check (its cost is AutoAttack's)")


def _fmt(**acc) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in acc.items())


@CHECKS.register("pgd_vs_fgsm")
def pgd_vs_fgsm(a: dict, p: SanityParams):
    return a["pgd"] > a["fgsm"] + p.tol, _fmt(pgd=a["pgd"], fgsm=a["fgsm"])


@CHECKS.register("eps_growth")
def eps_growth(a: dict, p: SanityParams):
    return a["pgd0"] > p.tol and a["pgd_big"] > a["pgd0"] - p.tol, _fmt(**{"eps": a["pgd0"], f"{p.eps_factor:g}x_eps": a["pgd_big"]})


@CHECKS.register("unbounded")
def unbounded(a: dict, p: SanityParams):
    return a["pgd_huge"] > p.huge_max, _fmt(**{f"eps_{p.huge_eps:g}": a["pgd_huge"]})


@CHECKS.register("more_steps")
def more_steps(a: dict, p: SanityParams):
    return a["pgd_strong"] > a["pgd"] + p.tol, _fmt(pgd10=a["pgd"], **{f"pgd{p.strong_steps}x{p.strong_restarts}": a["pgd_strong"]})


@CHECKS.register("square")
def square_check(a: dict, p: SanityParams):
    return a["square"] < a["pgd"] - p.tol, _fmt(square=a["square"], pgd=a["pgd"])


@CHECKS.register("autoattack")
def autoattack_check(a: dict, p: SanityParams):
    return a["pgd"] - a["autoattack"] > p.aa_gap, _fmt(pgd=a["pgd"], autoattack=a["autoattack"], gap=a["pgd"] - a["autoattack"])


def judge(acc: dict[str, float], p: SanityParams) -> dict[str, tuple[bool, str]]:
    """Check name -> (flagged, the numbers) for every check whose accuracies are in ``acc``."""
    out = {}
    for name in CHECKS.names():
        try:
            out[name] = CHECKS.get(name)(acc, p)
        except KeyError:  # an attack the check needs did not run (e.g. autoattack: false)
            continue
    return {k: (bool(f), d) for k, (f, d) in out.items()}


def _correct(model, adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (model(adv).argmax(1) == y).float()


@register_family("sanity")
class Sanity(Family):
    group = "robustness"
    keys = ("sanity/flags",)
    needs = ("logits", "adv")
    Params = SanityParams

    def __init__(self, ctx, want):
        super().__init__(ctx, want)
        self.p: SanityParams = ctx.family_params(type(self))
        self.seen = 0

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y = batch["image"], batch["label"]
        n = max(0, min(len(x), self.p.images - self.seen))
        self.seen += n
        out = {f"_sanity/{k}": nan_like(x) for k in self._names()}
        if n:
            for k, v in self._measure(batch, x[:n], y[:n], n).items():
                out[f"_sanity/{k}"][:n] = v
        return out

    def _names(self) -> list[str]:
        base = ["fgsm", "pgd", "pgd0", "pgd_big", "pgd_huge", "pgd_strong", "square"]
        return base + (["autoattack"] if self._autoattack() else [])

    def _autoattack(self) -> bool:
        """The autoattack check runs unless switched off, or FAB-T's torchattacks is missing (tag says so)."""
        import importlib.util

        if not self.p.autoattack:
            return False
        if self.ctx.cfg.evaluation.robust.autoattack_version == "standard" and not importlib.util.find_spec("torchattacks"):
            self.ctx.tags[f"{TAG}.autoattack"] = "skipped: torchattacks (FAB-T) is not installed; autoattack_version: nofab runs without it"
            return False
        return True

    def _measure(self, batch: Batch, x, y, n) -> dict[str, torch.Tensor]:
        from trainables.attacks import pgd
        from trainables.attacks.square import square
        from trainables.evaluation.attacks import _seed, linf_eps, victim

        ctx, rc, p = self.ctx, self.ctx.cfg.evaluation.robust, self.p
        v, m, eps, g = victim(ctx), ctx.model, linf_eps(ctx), ctx.generator("sanity")
        plain = lambda e: pgd(v, x, y, e, steps=rc.pgd_steps, alpha=rc.pgd_step_ratio * e / rc.pgd_steps)  # noqa: E731
        out = {"fgsm": _correct(m, self._adv(batch, "fgsm", x, y), y), "pgd": _correct(m, self._adv(batch, "pgd", x, y), y),
               "pgd0": _correct(m, plain(eps), y), "pgd_big": _correct(m, plain(p.eps_factor * eps), y),
               "pgd_huge": _correct(m, plain(p.huge_eps), y)}
        for r, k in ((eps, "pgd0"), (p.eps_factor * eps, "pgd_big")):  # nested balls (module docstring)
            if r <= p.huge_eps:
                out["pgd_huge"] = out["pgd_huge"].minimum(out[k])
        strong = torch.ones_like(out["pgd"])
        for _ in range(p.strong_restarts):
            adv = pgd(v, x, y, eps, steps=p.strong_steps, alpha=rc.pgd_step_ratio * eps / p.strong_steps,
                      random_start=True, generator=g)
            strong = strong.minimum(_correct(m, adv, y))
        out["pgd_strong"] = strong
        sq = square(v, x, y, eps, queries=p.square_queries, generator=torch.Generator().manual_seed(_seed(g)))
        out["square"] = _correct(m, sq, y)
        if p.autoattack:
            out["autoattack"] = _correct(m, self._adv(batch, "autoattack", x, y), y)
        return out

    def _adv(self, batch: Batch, attack: str, x, y) -> torch.Tensor:
        """The evaluation attack's images: shared with the attacks family when it runs ``attack``, else
        computed here on the checked images only."""
        from trainables.evaluation.attacks import build_attack

        if attack in self.ctx.cfg.evaluation.robust.attacks:
            return batch.need(f"adv:{attack}")[:len(x)]
        return build_attack(self.ctx, attack).call(x, y)

    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        from trainables.evaluation.base import nanmean

        acc = {k.removeprefix("_sanity/"): v for k, v in nanmean(values, [f"_sanity/{k}" for k in self._names()]).items()}
        if not acc:
            return {}
        n = int((~torch.isnan(values["_sanity/pgd"])).sum())
        p = self.p.model_copy(update={"tol": max(self.p.tol, 2 / max(n, 1))})  # never flag on a 1-image difference
        self.ctx.tags[f"{TAG}.images"] = f"{n} images, tolerance {p.tol:.3f}"
        verdicts = judge(acc, p)
        for name, (flag, detail) in verdicts.items():
            self.ctx.tags[f"{TAG}.{name}"] = f"{'FLAG' if flag else 'ok'}: {detail}"
        flagged = [k for k, (f, _) in verdicts.items() if f]
        self.ctx.tags[f"{TAG}.flagged"] = ",".join(flagged) or "none"
        return {"sanity/flags": float(len(flagged))} if "sanity/flags" in self.want else {}

    def settings(self) -> dict:
        return self.p.model_dump(mode="json")
