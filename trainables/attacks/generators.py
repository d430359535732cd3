"""Training-time adversarial-example generators that regimes compose (ALGORITHMS.md §1.1, §3.2, §5.2).

Stable contract (other regimes import it)::

    from trainables.attacks.generators import make_adversarial, build_generator, validate_generator
    x_adv = make_adversarial(kind, model, x, y, **params)    # validate + run, one call
    gen = build_generator(kind, params)                      # validate once (in a regime's __init__)
    x_adv = gen(model, x, y)                                 # run every step

``model``: the local module (``unwrap`` a DDP wrapper: attack forwards must not enter DDP's hooks), mapping
``x: [B,C,H,W]`` float in [0,1] to logits; ``y: [B]`` int64 labels -> ``x_adv`` of the same shape, detached.
Parameters never get gradients; autocast is off inside (float32 attacks under AMP). An unknown ``kind`` or
parameter raises ``ValueError`` with one line naming the valid ones.

| kind       | ε meaning (default)     | other params (defaults)                                              |
|------------|-------------------------|----------------------------------------------------------------------|
| fgsm       | L-inf pixels (8/255)    | —                                                                    |
| pgd        | L-inf pixels (8/255)    | steps 10, alpha 2.5·ε/steps, random_start true (Madry)               |
| pgd_l2     | L2 pixels (0.5)         | steps 10, alpha 2.5·ε/steps, random_start true                       |
| l2         | RMSE (0.01)             | steps 7, schedule ramp/constant, clip false (Lipschitz paper "L2")   |
| l2min      | RMSE (0.1)              | steps 7, schedule ramp/constant, clip false (Lipschitz "L2,min")     |
| half_half  | inner's (inner's)       | inner "l2min", inner_params {} (= inner with half true)              |

Every kind also takes:
- ``half`` (false): half-half AT (HHAT). With ``half_exact`` false (the authors' code) each image is
  perturbed independently with probability ``half_p`` (0.5), else exactly round(half_p·B) random images are;
  the attack then runs on the selected images only (their batch-norm statistics are the subset's).
- ``bn`` ("keep"): batch-norm mode during the attack. "keep" uses the model's current mode — train mode
  while training, which is what all three authors' codes do (batch statistics, running statistics updated
  by the attack's forward passes; ALGORITHMS.md §0 pitfall 2); "eval" uses running statistics (the attack
  then sees the network the evaluation sees); "train" forces train mode. Modes are restored afterwards.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from trainables.attacks.gradient import BNMode, fgsm, pgd
from trainables.attacks.minimal import l2_ball, l2min
from trainables.errors import format_validation_error
from trainables.registry import Registry


class GeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    eps: float = Field(gt=0, description="attack budget (unit: see the kind)")
    half: bool = Field(False, description="half-half AT: perturb only a random part of the batch")
    half_p: float = Field(0.5, gt=0, le=1, description="share of images perturbed with half")
    half_exact: bool = Field(False, description="half: exactly round(half_p*B) images instead of a coin per image")
    bn: BNMode = Field("keep", description="batch-norm mode during the attack: keep / eval / train")


class Generator:
    """One adversarial-example kind: ``Params`` and the ``attack`` hook; ``__call__`` adds half-half."""

    Params: ClassVar[type[GeneratorParams]] = GeneratorParams

    def __init__(self, params: dict[str, Any] | GeneratorParams | None = None):
        self.params = params if isinstance(params, GeneratorParams) else self.Params(**(params or {}))

    def attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.detach()
        if not self.params.half:
            return self.attack(model, x, y).detach()
        idx = self.selected(len(x), x.device, generator)
        out = x.clone()
        if len(idx):
            out[idx] = self.attack(model, x[idx], y[idx]).detach().to(out.dtype)
        return out

    def selected(self, n: int, device, generator=None) -> torch.Tensor:
        """Indices of the images half-half perturbs."""
        p = self.params
        if p.half_exact:
            return torch.randperm(n, generator=generator)[: round(p.half_p * n)].sort().values.to(device)
        return (torch.rand(n, generator=generator) < p.half_p).nonzero()[:, 0].to(device)


GENERATORS: Registry[type[Generator]] = Registry("adversarial generator")
register_generator = GENERATORS.register


@register_generator("fgsm")
class FGSMGenerator(Generator):
    class Params(GeneratorParams):
        eps: float = Field(8 / 255, gt=0, le=1, description="L-inf budget in [0,1] pixels")

    def attack(self, model, x, y):
        return fgsm(model, x, y, self.params.eps, bn=self.params.bn)


class _PGDParams(GeneratorParams):
    steps: int = Field(10, ge=1)
    alpha: float | None = Field(None, gt=0, description="step size; default 2.5*eps/steps")
    random_start: bool = True


@register_generator("pgd")
class PGDGenerator(Generator):
    norm: ClassVar[str] = "linf"

    class Params(_PGDParams):
        eps: float = Field(8 / 255, gt=0, le=1, description="L-inf budget in [0,1] pixels")

    def attack(self, model, x, y):
        p = self.params
        return pgd(model, x, y, p.eps, steps=p.steps, alpha=p.alpha, norm=self.norm,
                   random_start=p.random_start, bn=p.bn)


@register_generator("pgd_l2")
class PGDL2Generator(PGDGenerator):
    norm: ClassVar[str] = "l2"

    class Params(_PGDParams):
        eps: float = Field(0.5, gt=0, description="L2 budget in [0,1] pixel units")


class _RampParams(GeneratorParams):
    steps: int = Field(7, ge=1)
    schedule: Literal["ramp", "constant"] = Field("ramp", description="ramp: the code's 2(S-n)/(S(S+1)) eps; constant: eps/S (paper)")
    clip: bool = Field(False, description="clip x+delta to [0,1] (the authors' code does not)")


@register_generator("l2")
class L2Generator(Generator):
    class Params(_RampParams):
        eps: float = Field(0.01, gt=0, description="RMSE budget (lipschitz paper; 0.01 RMSE ~ 0.55 L2 on CIFAR)")

    def attack(self, model, x, y):
        p = self.params
        return l2_ball(model, x, y, p.eps, p.steps, schedule=p.schedule, clip=p.clip, bn=p.bn)


@register_generator("l2min")
class L2MinGenerator(Generator):
    class Params(_RampParams):
        eps: float = Field(0.1, gt=0, description="RMSE budget of the search (lipschitz paper L2,min)")

    def attack(self, model, x, y):
        p = self.params
        return l2min(model, x, y, p.eps, p.steps, schedule=p.schedule, clip=p.clip, bn=p.bn)


@register_generator("half_half")
class HalfHalf(Generator):
    """HHAT: ``inner`` (default l2min) applied with ``half`` on; ``eps`` (if given) goes to the inner kind."""

    class Params(GeneratorParams):
        eps: float | None = Field(None, gt=0, description="inner budget (default: the inner kind's)")
        half: bool = True
        inner: str = Field("l2min", description="generator kind that perturbs the selected images")
        inner_params: dict[str, Any] = Field(default_factory=dict)

        @model_validator(mode="after")
        def _inner(self):
            if self.inner == "half_half":
                raise ValueError("inner: half_half cannot nest itself")
            try:
                validate_generator(self.inner, self._inner_dict())
            except ValueError as e:
                raise ValueError(f"inner: {e}") from None
            return self

        def _inner_dict(self) -> dict[str, Any]:
            own = {"half": self.half, "half_p": self.half_p, "half_exact": self.half_exact, "bn": self.bn}
            return {**self.inner_params, **own, **({"eps": self.eps} if self.eps is not None else {})}

    def __init__(self, params=None):
        super().__init__(params)
        self.inner = GENERATORS.get(self.params.inner)(self.params._inner_dict())

    def __call__(self, model, x, y, generator=None):
        return self.inner(model, x, y, generator)


def validate_generator(kind: str, params: dict[str, Any] | None = None) -> None:
    """Raise ``ValueError`` (one line per problem, naming the field) if ``kind``/``params`` are invalid."""
    cls = GENERATORS.get(kind)
    try:
        cls.Params(**(params or {}))
    except ValidationError as e:
        raise ValueError(format_validation_error(e, prefix=f"{kind}", model=cls.Params)) from None


def build_generator(kind: str, params: dict[str, Any] | None = None) -> Generator:
    """A validated generator: ``build_generator("pgd", {"eps": 4/255})(model, x, y) -> x_adv``."""
    validate_generator(kind, params)
    return GENERATORS.get(kind)(params)


def make_adversarial(kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     generator: torch.Generator | None = None, **params) -> torch.Tensor:
    """One call: ``make_adversarial("l2min", unwrap(model), x, y, eps=0.1, half=True) -> x_adv``."""
    return build_generator(kind, params)(model, x, y, generator)
