"""The metric-family contract, the family registry and the shared per-batch work.

A metric family is one module here with one registered class (``@register_family("localization")``):

- ``group``: the evaluation group it belongs to (``evaluation.groups`` selects groups: ``accuracy``,
  ``robustness``, ``explain``, or a new family's own); ``keys``: every key it can produce (rows of
  ``metrics/keys.py``); ``configured(cfg)``: the keys a full evaluation computes under ``cfg``;
- ``correct_only``: admits only correctly classified images (the report then compares its keys on the images
  every compared trial classifies correctly); ``split``: ``"full"`` test split or the seeded ``"subset"``;
  ``needs``: the shared per-batch work it reads (``batch.need("cam")``), computed once per batch whichever
  families ask (``WORK`` below); asking for work it did not declare is an error;
- ``per_image(batch) -> {key: Tensor[B]}`` for the requested keys ``self.want`` (NaN = image not admitted;
  keys starting with ``_`` are intermediates ``reduce`` consumes); ``reduce(values) -> {key: float}``
  (default: mean over admitted images); ``settings()``: the effective settings logged to MLflow;
  ``artifacts(batch)``: figures from the first subset batch (rank 0, full evaluations only);
- ``Params``: a family without a section of ``EvalConfig`` reads ``evaluation.params.<name>`` through it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from trainables.registry import Registry


class FamilyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class EvalContext:
    model: torch.nn.Module          # the Classifier (unwrapped, eval mode)
    cfg: Any                        # TrialConfig
    regime: Any                     # Regime
    device: torch.device
    num_classes: int
    rank: int = 0
    world: int = 1
    tags: dict[str, str] = field(default_factory=dict)        # reasons for absent metrics, ...
    artifacts: dict[str, Any] = field(default_factory=dict)   # figures, the per-image table (rank 0 logs)
    settings: dict[str, Any] = field(default_factory=dict)    # effective settings -> MLflow params
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, name: str, make: Callable[[], Any]) -> Any:
        """One object per evaluation (the attack victim, the smooth IFIA copy), made on first use."""
        if name not in self._shared:
            self._shared[name] = make()
        return self._shared[name]

    def generator(self, name: str) -> torch.Generator:
        """A generator per metric (seeded by ``evaluation.seed``, the name and the rank): a key computed alone
        draws exactly the numbers it draws in the full evaluation."""
        seed = (self.cfg.evaluation.seed * 1_000_003 + zlib.crc32(name.encode()) + 7919 * self.rank) % 2**63
        return self.shared(f"generator:{name}", lambda: torch.Generator(self.device).manual_seed(seed))

    def family_params(self, family: type["Family"]) -> FamilyParams:
        raw = self.cfg.evaluation.params.get(family.name, {})
        return self.shared(f"params:{family.name}", lambda: family.Params.model_validate(raw))


WORK: Registry[Callable[..., Any]] = Registry("shared evaluation work", "trainables.evaluation")
register_work = WORK.register


class Batch:
    """One batch (``image``, ``label``, ``index``, boxes, masks ...) and its shared work, computed on first
    ``need(name)``; ``name`` is a ``WORK`` entry, optionally ``entry:argument`` (``adv:pgd``)."""

    def __init__(self, ctx: EvalContext, data: dict, allowed: frozenset[str] | None = None,
                 cache: dict | None = None):
        self.ctx, self.data, self.allowed = ctx, data, allowed
        self._cache = {} if cache is None else cache

    def __getitem__(self, key: str):
        return self.data[key]

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def view(self, needs: tuple[str, ...]) -> "Batch":
        """The same batch and cache, restricted to the declared ``needs`` of one family."""
        return Batch(self.ctx, self.data, frozenset(needs), self._cache)

    def need(self, name: str):
        entry, _, arg = name.partition(":")
        if self.allowed is not None and entry not in self.allowed:
            raise RuntimeError(f"{name!r} is not among the family's declared needs {sorted(self.allowed)}")
        if name not in self._cache:
            self._cache[name] = WORK.get(entry)(self.ctx, self, *([arg] if arg else []))
        return self._cache[name]


class Family:
    name: ClassVar[str]
    group: ClassVar[str]
    keys: ClassVar[tuple[str, ...]] = ()
    split: ClassVar[str] = "subset"
    correct_only: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[FamilyParams]] = FamilyParams

    def __init__(self, ctx: EvalContext, want: set[str]):
        self.ctx, self.want = ctx, set(want)

    @classmethod
    def all_keys(cls) -> tuple[str, ...]:
        return cls.keys

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        return cls.all_keys()

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        return nanmean(values, self.want)

    def settings(self) -> dict[str, Any]:
        return {}

    def artifacts(self, batch: Batch) -> None:
        """Optional figures in ``ctx.artifacts`` from the first subset batch (rank 0 only)."""

    def absent_reason(self, key: str) -> str:
        return "no evaluated image is admitted by the metric's definition"


FAMILIES: Registry[type[Family]] = Registry("metric family", "trainables.evaluation")


def register_family(name: str):
    """``@register_family("localization")``: registers the class and sets its ``name``."""
    def deco(cls: type[Family]) -> type[Family]:
        cls.name = name
        return FAMILIES.register(name)(cls)

    return deco


def nanmean(values: dict[str, torch.Tensor], keys) -> dict[str, float]:
    """Mean over the admitted (non-NaN) images of each key in ``keys`` present in ``values``."""
    out = {}
    for k in keys:
        v = values.get(k)
        if v is not None and (v := v[~torch.isnan(v)]).numel():
            out[k] = float(v.mean())
    return out


def nan_like(x: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` float tensor of NaN for the batch ``x``."""
    return torch.full((len(x),), float("nan"), device=x.device)


def correct_only_keys() -> list[str]:
    """Keys of the families that admit only correctly classified images."""
    return [k for n in FAMILIES.names() if FAMILIES.get(n).correct_only for k in FAMILIES.get(n).all_keys()]


def families_of_group(group: str) -> list[type[Family]]:
    return [FAMILIES.get(n) for n in FAMILIES.names() if FAMILIES.get(n).group == group]


def groups() -> list[str]:
    return sorted({FAMILIES.get(n).group for n in FAMILIES.names()})


def family_of(key: str) -> type[Family]:
    """The registered family producing ``key``; one line listing the producible keys otherwise."""
    if not any(key in FAMILIES.get(n).all_keys() for n in FAMILIES.names()):
        FAMILIES.populate(rescan=True)  # a family module added after this process first looked
    for name in FAMILIES.names():
        if key in FAMILIES.get(name).all_keys():
            return FAMILIES.get(name)
    valid = sorted(k for n in FAMILIES.names() for k in FAMILIES.get(n).all_keys())
    from trainables.registry import UnknownNameError

    raise UnknownNameError(f"no metric family produces {key!r}; valid: {', '.join(valid)}")
