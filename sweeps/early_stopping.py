"""The sweep spec's ``early_stopping:`` block: rungs, η, the rung-evaluation subset and keys (issue #15).

```yaml
early_stopping:
  reduction_factor: 2        # η: a trial continues past a rung iff it ranks in the top 1/η there (default 3)
  rungs: [2, 4]              # epochs after which the rung keys are evaluated, or:
  # min_epochs: 1            # geometric rungs min_epochs * η^i below base.optim.epochs (the default: 1)
  images: 64                 # fixed, seeded test subset of a rung evaluation
  keys: [acc/top1]           # default: the sweep's objectives (objective or constraint keys only)
```
Absent = every trial runs its full budget. The ranking is ``sweeps/mo_rank.py``; the scheduler
``sweeps/scheduler.py``.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EarlyStopping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    reduction_factor: int = Field(3, ge=2, le=1000, description="η (>= 2): the top 1/η of a rung continue")
    rungs: tuple[int, ...] | None = Field(None, description="rung epochs, increasing, below optim.epochs")
    min_epochs: int | None = Field(None, ge=1, description="first rung; later rungs min_epochs * η^i")
    images: int = Field(64, ge=1, le=1_000_000, description="test images of a rung evaluation (fixed, seeded subset)")
    keys: tuple[str, ...] | None = Field(None, min_length=1, description="default: the sweep's objectives")

    @model_validator(mode="after")
    def _one_rule(self):
        if self.rungs is not None and self.min_epochs is not None:
            raise ValueError("give rungs or min_epochs, not both")
        if self.rungs is not None:
            if not self.rungs:
                raise ValueError("rungs: give at least one rung epoch")
            if any(r < 1 for r in self.rungs) or list(self.rungs) != sorted(set(self.rungs)):
                raise ValueError(f"rungs {list(self.rungs)}: epochs >= 1, strictly increasing")
        return self

    def rung_epochs(self, epochs: int) -> tuple[int, ...]:
        """The rungs of a trial that trains ``epochs`` epochs."""
        if self.rungs is not None:
            return self.rungs
        out, r = [], self.min_epochs or 1
        while r < epochs:
            out.append(r)
            r *= self.reduction_factor
        return tuple(out)

    def check(self, epochs: int, objectives: list[str], constraint_keys: list[str]) -> None:
        """Against the rest of the spec (``ValueError``, one line, naming the field)."""
        rungs = self.rung_epochs(epochs)
        if not rungs:
            raise ValueError(f"early_stopping.min_epochs ({self.min_epochs}) leaves no rung below "
                             f"base.optim.epochs ({epochs})")
        if rungs[-1] >= epochs:
            raise ValueError(f"early_stopping.rungs {list(rungs)}: every rung must be below base.optim.epochs "
                             f"({epochs}); the full budget is evaluated anyway")
        for k in self.keys or ():
            if k not in objectives and k not in constraint_keys:
                raise ValueError(f"early_stopping.keys: {k!r} is not an objective or constraint key; allowed: "
                                 f"{', '.join(dict.fromkeys(objectives + constraint_keys))}")
        if self.keys is not None and not set(self.keys) & set(objectives):
            raise ValueError("early_stopping.keys: name at least one objective (the rung rank uses objectives)")

    def rung_keys(self, objectives: list[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.keys if self.keys is not None else objectives))  # each key once


def budget_share(rungs: tuple[int, ...], epochs: int, eta: int) -> float:
    """Expected share of the full training budget under successive halving: every trial trains to the first
    rung, 1/η of them on to the second, 1/η² to the third, ..., 1/η^k to ``epochs`` (asymptotic: ignores the
    first η trials of a rung, which always continue, and the rung evaluations themselves)."""
    bounds = (0, *rungs, epochs)
    return sum((b - a) * eta ** -i for i, (a, b) in enumerate(zip(bounds, bounds[1:]))) / epochs


def dry_run_lines(es: EarlyStopping, epochs: int, objectives: list[str]) -> list[str]:
    rungs = es.rung_epochs(epochs)
    return [f"early stopping: rungs at epochs {list(rungs)} of {epochs}, eta {es.reduction_factor}, "
            f"keys {', '.join(es.rung_keys(objectives))} on {es.images} test images; "
            f"expected budget share {budget_share(rungs, epochs, es.reduction_factor):.0%} of the full budget"]
