"""The Optuna define-by-run search space of a sweep and the Optuna searcher arx uses.

``SearchSpace`` is a callable object (a lambda would break pickling): it picks the regime first and
samples a regime's parameters only when that regime is chosen (conditional space). Parameter names are
``regime`` / ``<search path>`` / ``<regime>.<param>``; it returns the full TrialConfig dict as ``trial``.
"""
from __future__ import annotations

import math
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from sweeps.spec import CategoricalDist, FixedDist, FloatDist, IntDist, SweepSpec


def suggest(trial, name: str, dist) -> Any:
    if isinstance(dist, FixedDist):
        return dist.value
    if isinstance(dist, FloatDist):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDist):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDist):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unknown distribution {dist!r}")


class SearchSpace:
    def __init__(self, spec: SweepSpec):
        self.spec_data = spec.model_dump(mode="json")
        self._spec: SweepSpec | None = spec

    @property
    def spec(self) -> SweepSpec:
        if self._spec is None:
            self._spec = SweepSpec.model_validate(self.spec_data)
        return self._spec

    def __getstate__(self):
        return {"spec_data": self.spec_data, "_spec": None}

    def sample(self, trial) -> tuple[str, dict[str, Any]]:
        spec = self.spec
        names = list(spec.regimes)
        regime = trial.suggest_categorical("regime", names) if len(names) > 1 else names[0]
        sampled = {name: suggest(trial, name, d) for name, d in spec.search.items()}
        for name, d in spec.regimes[regime].items():
            sampled[f"{regime}.{name}"] = suggest(trial, f"{regime}.{name}", d)
        return regime, sampled

    def __call__(self, trial) -> dict[str, Any]:
        regime, sampled = self.sample(trial)
        return {"trial": self.spec.trial_dict(regime, sampled)}

    def describe(self) -> list[dict[str, str]]:
        """Rows for ``--dry-run``: where each parameter applies and its distribution."""
        rows = [{"regime": "(all)", "parameter": k, "distribution": _fmt(d)} for k, d in self.spec.search.items()]
        for regime, params in self.spec.regimes.items():
            if not params:
                rows.append({"regime": regime, "parameter": "-", "distribution": "(defaults)"})
            rows += [{"regime": regime, "parameter": k, "distribution": _fmt(d)} for k, d in params.items()]
        return rows

    def corner_configs(self) -> list[dict[str, Any]]:
        """Trial dicts at every range end / choice, to validate the space before launching anything."""
        out = []
        for regime, params in self.spec.regimes.items():
            for pick in (0, -1):
                sampled = {}
                for name, d in {**self.spec.search, **{f"{regime}.{k}": v for k, v in params.items()}}.items():
                    sampled[name] = _corner(d, pick)
                out.append(self.spec.trial_dict(regime, sampled))
            for name, d in params.items():
                if isinstance(d, CategoricalDist):
                    for c in d.choices:
                        out.append(self.spec.trial_dict(regime, {f"{regime}.{name}": c}))
        return out


def _corner(d, pick: int):
    if isinstance(d, FixedDist):
        return d.value
    if isinstance(d, CategoricalDist):
        return d.choices[pick]
    return d.low if pick == 0 else d.high


def _fmt(d) -> str:
    if isinstance(d, FixedDist):
        return f"fixed {d.value!r}"
    if isinstance(d, CategoricalDist):
        return f"one of {d.choices}"
    kind = "log-" if d.log else ""
    return f"{kind}{d.type} [{d.low}, {d.high}]" + (f" step {d.step}" if d.step else "")


class ArxOptunaSearch(OptunaSearch):
    """OptunaSearch that reports failures explicitly and records constraint values.

    Stock OptunaSearch tells COMPLETE with ``[None, ...]`` when a multi-objective result lacks a value,
    which Optuna rejects, leaving the trial RUNNING (DESIGN.md). Here a trial that errored, or whose final
    result lacks an objective or has a NaN one, is told FAIL. A trial stopped by arx's early-stopping scheduler
    (``mark_pruned``, called before Tune reports the stopped trial) is told PRUNED, with the rung it reached as
    the user attribute ``arx.rung``: never COMPLETE with early values (issue #15).
    """

    def __init__(self, *args, constraints=(), **kwargs):
        super().__init__(*args, **kwargs)
        self._constraints = list(constraints)
        self._pruned: dict[str, int] = {}

    def mark_pruned(self, trial_id: str, rung: int) -> None:
        self._pruned[trial_id] = rung

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        import optuna

        from sweeps.compat import optuna_search_state

        trials, told, study = optuna_search_state(self)
        if trial_id in told or trial_id not in trials:
            return
        ot_trial = trials[trial_id]
        if _finished(study, ot_trial.number):
            told.add(trial_id)  # told before a driver restart
            return
        if trial_id in getattr(self, "_pruned", {}):
            ot_trial.set_user_attr("arx.rung", self._pruned[trial_id])
            study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            told.add(trial_id)
            return
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        ok = not error and all(v is not None and math.isfinite(float(v)) for v in values)
        if ok:
            for c in self._constraints:  # Optuna 5: NSGA-II / TPE rank feasible (all <= 0) trials first
                v = _violation(c, result)
                ot_trial.set_user_attr(f"constraint:{c}", v)
                ot_trial.set_constraint(str(c), v)
            study.tell(ot_trial, values if len(values) > 1 else values[0])
        else:
            study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        told.add(trial_id)


def _finished(study, number: int) -> bool:
    """Whether the study's trial ``number`` is already finished (read through the public trial list)."""
    return any(t.number == number and t.state.is_finished() for t in study.get_trials(deepcopy=False))


def _violation(c, result: dict) -> float:
    """A constraint's violation; a missing or NaN metric counts as infeasible (Optuna rejects NaN)."""
    try:
        v = c.violation(result)
    except (KeyError, TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(v) else v
