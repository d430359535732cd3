"""Multi-objective asynchronous successive halving: a Ray Tune ``TrialScheduler`` (issue #15).

ASHA-style (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning"): a trial is judged when
it reports a rung result (``rung`` + ``rung/<key>``, ``trainables/rungs.py``), against every trial recorded at
that rung so far, with no waiting for a full rung. It continues iff it ranks in the top ``len // η`` by the
multi-objective rank of ``sweeps/mo_rank.py`` (fewer than η recorded: continue). Otherwise Tune **STOPs** it
(never PAUSE: restarting a DDP worker group costs seconds) and the scheduler says the truth everywhere:

* Optuna: the searcher is told the trial is pruned (``ArxOptunaSearch.mark_pruned``) before Tune reports the
  stopped trial to it, so it tells Optuna ``PRUNED``, never COMPLETE with early values;
* MLflow: the trial's child run gets ``arx.status = pruned``, ``arx.rung`` and ``arx.device_seconds_saved`` and
  is terminated (``KILLED``), not left RUNNING;
* the rung table (``sweeps/rung_table.py``) records every result and decision, written atomically, so a
  resumed sweep re-takes a decision already taken (no pruned trial is resurrected) and decides new ones on the
  same recorded set.

Saved device-seconds of a pruned trial: its device-seconds at the rung x (epochs - rung) / rung.
"""
from __future__ import annotations

import math
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.mo_rank import Record, keep
from sweeps.rung_table import RungTable
from trainables.rungs import PREFIX


class MultiObjectiveHalving(FIFOScheduler):
    def __init__(self, keys: list[str], modes: list[str], constraints: list, eta: int,
                 table_path: str | Path | None = None, tracking: dict | None = None):
        super().__init__()
        self.keys, self.modes, self.eta = list(keys), list(modes), eta
        self.constraints = list(constraints)  # sweeps.spec.Constraint, only those on rung keys count here
        self.table_path, self.tracking = table_path, tracking
        self._table: RungTable | None = None

    def __getstate__(self):  # the table lives in its file (Tune pickles the scheduler once, at creation)
        return {**self.__dict__, "_table": None}

    @property
    def table(self) -> RungTable:
        if self._table is None:
            self._table = RungTable(self.table_path)
        return self._table

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives come from the spec, not from TuneConfig

    def record_of(self, trial_id: str, result: dict) -> Record:
        values = tuple(_float(result.get(PREFIX + k)) for k in self.keys)
        violation = sum(max(0.0, _violation(c, result)) for c in self.constraints)
        return Record(trial_id, values, violation)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if "rung" not in result:
            return TrialScheduler.CONTINUE
        rung, tid = int(result["rung"]), trial.trial_id
        decided = self.table.decision(rung, tid)
        if decided is None:
            self.table.record(rung, self.record_of(tid, result), keep=True)
            decided = keep(self.table.records(rung), tid, self.eta, self.modes)
            if not decided:
                self.table.record(rung, self.record_of(tid, result), keep=False)
        if decided:
            return TrialScheduler.CONTINUE
        self._prune(tune_controller, trial, rung, result)
        return TrialScheduler.STOP

    def _prune(self, tune_controller, trial, rung: int, result: dict) -> None:
        tid = trial.trial_id
        if tid not in self.table.pruned:
            used = _float(result.get(PREFIX + "device_seconds"))
            epochs = trial.config.get("trial", {}).get("optim", {}).get("epochs", rung)
            self.table.prune(tid, rung, used, used * max(epochs - rung, 0) / rung)
        searcher = _arx_searcher(getattr(tune_controller, "search_alg", None))
        if searcher is not None:
            searcher.mark_pruned(tid, rung)
        if self.tracking:
            mark_run_pruned(self.tracking, tid, self.table.pruned[tid])

    def debug_string(self) -> str:
        return f"MultiObjectiveHalving: eta={self.eta}, pruned={len(self.table.pruned)}"


def mark_run_pruned(tracking: dict, trial_id: str, info: dict) -> None:
    """Tag and terminate the trial's MLflow child run (found by its trial-id tag under the parent run)."""
    from mlflow.tracking import MlflowClient

    from trainables.tracking import PARENT_TAG, RUNG_TAG, SAVED_TAG, STATUS_TAG, TRIAL_ID_TAG

    client = MlflowClient(tracking_uri=tracking["uri"])
    exp = client.get_experiment_by_name(tracking["experiment"])
    query = f"tags.`{TRIAL_ID_TAG}` = '{trial_id}' and tags.`{PARENT_TAG}` = '{tracking['parent_run_id']}'"
    runs = client.search_runs([exp.experiment_id], query, max_results=1) if exp else []
    if not runs:
        return
    run_id = runs[0].info.run_id
    client.set_tag(run_id, STATUS_TAG, "pruned")
    client.set_tag(run_id, RUNG_TAG, str(info["rung"]))
    client.set_tag(run_id, SAVED_TAG, f"{info['saved_device_seconds']:.3f}")
    client.set_terminated(run_id, "KILLED")


def _arx_searcher(alg):
    """The ``ArxOptunaSearch`` behind Tune's SearchGenerator / ConcurrencyLimiter wrappers, or None."""
    while alg is not None and not hasattr(alg, "mark_pruned"):
        alg = getattr(alg, "searcher", None)
    return alg


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _violation(c, result: dict) -> float:
    """A rung constraint's violation (0 when its key is not evaluated at rungs; inf when missing or NaN)."""
    v = _float(result.get(PREFIX + c.key, math.nan))
    if math.isnan(v):
        return math.inf
    return c.violation({c.key: v})
