"""The sweep spec: YAML -> ``SweepSpec`` (pydantic) -> Optuna define-by-run search space.

```yaml
name: shapes_default
base: {dataset: {name: shapes}, evaluation: {groups: [accuracy, robustness, explain]}}  # a TrialConfig
search:                       # optional, shared by every regime (dotted TrialConfig paths)
  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
regimes:                      # the regimes to include, each with its own space (sampled only when chosen)
  standard: {}
  fgsm_at: {eps: {type: float, low: 0.01, high: 0.06}}
objectives: [{key: acc/top1, direction: max}, {key: robust/pgd, direction: max}]
constraints: ["acc/top1 >= 0.5"]
sampler: {name: nsga2, seed: 0}
num_samples: 8
```
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sweeps.early_stopping import EarlyStopping
from trainables.config import ResourcesConfig, RungConfig, TrialConfig, apply_overrides, load_yaml
from trainables.errors import ConfigError, format_validation_error
from trainables.metrics.keys import KEYS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FloatDist(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _range(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a log-scale range cannot have a step (Optuna)")
        return self


class IntDist(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _range(self):
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log-scale int range needs low >= 1 and step 1 (Optuna)")
        return self


class CategoricalDist(_Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


class FixedDist(_Strict):
    type: Literal["fixed"]
    value: Any


# tagged by ``type``: one error for the chosen kind, not one per union member
Dist = Annotated[Union[FloatDist, IntDist, CategoricalDist, FixedDist], Field(discriminator="type")]


class Objective(_Strict):
    key: str
    direction: Literal["max", "min"] | None = None

    @field_validator("key")
    @classmethod
    def _known(cls, v):
        if v not in KEYS:
            raise ValueError(f"unknown metric {v!r}; valid: {', '.join(sorted(k for k in KEYS if not k.startswith(('train/', 'cost/'))))}")
        return v

    @property
    def mode(self) -> str:
        return self.direction or KEYS[self.key].direction


_CONSTRAINT = re.compile(r"^\s*([\w/]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


class Constraint(_Strict):
    key: str
    op: Literal[">=", "<="]
    value: float

    def violation(self, metrics: dict) -> float:
        """Optuna convention: <= 0 is feasible."""
        v = float(metrics[self.key])
        return (self.value - v) if self.op == ">=" else (v - self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


class Sampler(_Strict):
    name: Literal["nsga2", "tpe", "random", "grid"] = "nsga2"
    seed: int = Field(0, ge=0, lt=2**32, description="Optuna/numpy seeds are 32-bit")
    population_size: int | None = Field(None, ge=2, description="NSGA-II population (default: min(num_samples, 50))")


class Retries(_Strict):
    trial: int = Field(0, ge=0, description="Tune-level retries of a failed trial (driver failures)")
    worker: int = Field(2, ge=0, description="Train-level restarts after a worker failure (from the last checkpoint)")


DEFAULT_OBJECTIVES = [{"key": "acc/top1"}, {"key": "robust/pgd"}, {"key": "explain/box_iou"}]


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: dict[str, Any] = Field(default_factory=dict, description="a TrialConfig shared by every trial")
    search: dict[str, Dist] = Field(default_factory=dict)
    regimes: dict[str, dict[str, Dist]] = Field(min_length=1)
    objectives: list[Objective] = Field(default_factory=lambda: [Objective(**o) for o in DEFAULT_OBJECTIVES],
                                        min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    sampler: Sampler = Field(default_factory=Sampler)
    num_samples: int = Field(8, ge=1)
    max_concurrent: int | None = Field(None, ge=1, description="default: as many as the cluster's resources fit")
    resources: ResourcesConfig | None = None
    storage_path: str | None = Field(None, description="Ray storage (local dir, s3://, gs://); default RESULTS/ray")
    tracking_uri: str | None = Field(None, description="MLflow; default MLFLOW_TRACKING_URI or RESULTS/mlflow.db")
    optuna_storage: str | None = Field(None, description="Optuna RDB URL; default sqlite RESULTS/optuna.db")
    retries: Retries = Field(default_factory=Retries)
    early_stopping: EarlyStopping | None = Field(None, description="successive halving over rungs; absent = none")

    @field_validator("constraints", mode="before")
    @classmethod
    def _parse_constraints(cls, v):
        if not isinstance(v, (list, tuple)):
            return v  # pydantic says what is wrong with it
        out = []
        for item in v:
            if isinstance(item, str):
                m = _CONSTRAINT.match(item)
                if not m:
                    raise ValueError(f"constraint {item!r}: expected 'KEY >= VALUE' or 'KEY <= VALUE'")
                item = {"key": m[1], "op": m[2], "value": float(m[3])}
            out.append(item)
        return out

    @model_validator(mode="after")
    def _consistent(self):
        from trainables.regimes import REGIMES

        for name, params in self.regimes.items():
            regime = REGIMES.get(name)  # unknown regime -> lists the valid ones
            for p in params:
                if is_trial_path(regime.Params, p):  # a per-regime TrialConfig setting, e.g. optim.lr
                    _check_field(TrialConfig, p, f"regimes.{name}.{p}")
                else:
                    _check_field(regime.Params, p, f"regimes.{name}.{p}",
                                 "; or a TrialConfig path for this regime only, e.g. optim.lr")
        for p in self.search:
            if p.split(".")[0] == "regime":
                raise ValueError(f"search.{p}: regime parameters belong under regimes.<name>")
            _check_field(TrialConfig, p, f"search.{p}")
        base = self.trial_base()
        for i, obj in enumerate(self.objectives):
            _check_produced(obj.key, base, f"objectives[{i}]")
        for i, c in enumerate(self.constraints):
            if c.key not in KEYS:
                raise ValueError(f"constraints[{i}]: unknown metric {c.key!r}")
            _check_produced(c.key, base, f"constraints[{i}]")
        keys = [o.key for o in self.objectives]
        if len(set(keys)) != len(keys):
            raise ValueError("objectives: each metric may appear once")
        if self.early_stopping is not None:
            self.early_stopping.check(base.optim.epochs, keys, [c.key for c in self.constraints])
        return self

    # ---- derived ------------------------------------------------------------------------------
    def trial_base(self) -> TrialConfig:
        data = copy.deepcopy(self.base)
        data.setdefault("name", self.name)
        if self.resources is not None:
            data["resources"] = self.resources.model_dump()
        try:
            cfg = TrialConfig.model_validate(data)
        except ValidationError as e:
            raise ValueError(format_validation_error(e, prefix="base", model=TrialConfig)) from None
        return cfg if self.early_stopping is None else cfg.model_copy(update={"rungs": self.rung_config(cfg)})

    def rung_config(self, cfg: TrialConfig) -> RungConfig:
        """The trials' ``rungs`` section from the ``early_stopping`` block."""
        es = self.early_stopping
        return RungConfig(epochs=es.rung_epochs(cfg.optim.epochs), images=es.images,
                          keys=es.rung_keys([o.key for o in self.objectives]))

    @property
    def metric_names(self) -> list[str]:
        return [o.key for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    def trial_dict(self, regime: str, sampled: dict[str, Any]) -> dict[str, Any]:
        """The full TrialConfig dict of one trial from the sampled values (names as in ``SearchSpace``)."""
        data = self.trial_base().to_dict()
        from trainables.regimes import REGIMES

        prefix = f"{regime}."
        params: dict[str, Any] = {}
        for name, value in sampled.items():
            if name.startswith(prefix):
                sub = name[len(prefix):]
                _set_path(data if is_trial_path(REGIMES.get(regime).Params, sub) else params, sub, value)
            elif name in self.search:
                _set_path(data, name, value)
        base_params = data["regime"]["params"] if data["regime"]["name"] == regime else {}
        data["regime"] = {"name": regime, "params": {**base_params, **params}}
        return data


def _set_path(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


TRIAL_SECTIONS = frozenset(TrialConfig.model_fields) - {"regime", "name"}


def is_trial_path(params_model: type[BaseModel], dotted: str) -> bool:
    """A key in a regime's space that is not one of its parameters but starts with a TrialConfig section
    (``optim.lr``, ``model.drop_rate``, ``seed``) sets that TrialConfig value for this regime's trials only."""
    head = dotted.split(".")[0]
    return head not in params_model.model_fields and head in TRIAL_SECTIONS


def _check_field(model: type[BaseModel], dotted: str, where: str, hint: str = "") -> None:
    """A dotted parameter path must name a field (walked while the fields are pydantic models)."""
    cls = model
    for part in dotted.split("."):
        if cls is None:
            return
        if part not in cls.model_fields:
            raise ValueError(f"{where}: unknown parameter {part!r}; allowed: {', '.join(sorted(cls.model_fields))}"
                             + (hint if cls is model else ""))
        ann = cls.model_fields[part].annotation
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _check_produced(key: str, base: TrialConfig, where: str) -> None:
    from trainables.evaluation import configured_keys, family_of

    group = KEYS[key].group
    if group not in base.evaluation.groups:
        raise ValueError(f"{where}: {key!r} is produced by the {group!r} evaluation group; "
                         f"add it to base.evaluation.groups (now {list(base.evaluation.groups)})")
    try:
        family = family_of(key)
    except ValueError:
        raise ValueError(f"{where}: {key!r} needs a metric family of the {group!r} group, which this arx "
                         f"does not have") from None
    if key not in configured_keys(base):
        raise ValueError(f"{where}: {key!r} is left out by the settings of the {family.name!r} metric family "
                         f"in base.evaluation (e.g. its attacks / metrics list)")


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> SweepSpec:
    """Load and validate a sweep YAML (default: the embedded ``sweeps/configs/default.yaml``).

    ``path`` may also name an embedded config (``shapes_nag`` -> ``sweeps/configs/shapes_nag.yaml``).
    """
    path = resolve_config_path(path)
    data = apply_overrides(load_yaml(path), overrides or [])
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: " + format_validation_error(e, model=SweepSpec)) from None


def default_config_path() -> Path:
    return Path(__file__).parent / "configs" / "default.yaml"


def embedded_configs() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))


def resolve_config_path(path: str | Path | None) -> Path:
    """A file path, or the name of an embedded sweep config; a clear error listing them otherwise."""
    if not path:
        return default_config_path()
    p = Path(path)
    if p.is_file():
        return p
    embedded = Path(__file__).parent / "configs" / f"{p.name.removesuffix('.yaml')}.yaml"
    if p.parent == Path(".") and embedded.is_file():
        return embedded
    raise ConfigError(f"config file {str(p)!r} does not exist (embedded configs: {', '.join(embedded_configs())})")
