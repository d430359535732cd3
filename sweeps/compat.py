"""Every private Optuna / Ray attribute arx still needs, in one place (tests/unit/test_compat.py fails loudly
when a release renames one). Everything else in arx uses public APIs only.

- Ray Tune's ``OptunaSearch`` keeps its trial map, its finished set and its study in private attributes, and
  has no public hook for telling a trial PRUNED or FAIL explicitly (``sweeps/space.py``).
- Ray 2.60 has no public reader of the GCS placement-group table with ``creator_actor_dead`` that works without
  the dashboard (``sweeps/orphans.py``).
- Ray Train V2 takes no failure policy from its user: ``trainables/failures.py`` subclasses its default policy
  and swaps it in where the trainer hands the controller its arguments (``FailurePolicyTrainer``).
- Ray Train V2 logs every ``ray.train.report`` at INFO under a logger named by a file path, out of reach of
  ``RunConfig(logging_config=...)`` (``trainables/loop.py`` quiets it through ``train_report_logger``).

``trainables`` imports this module (it is light: no Ray or Optuna import at module level).
"""
from __future__ import annotations

from typing import Any


def optuna_search_state(searcher) -> tuple[dict[str, Any], set[str], Any]:
    """``(tune trial id -> optuna.Trial, told trial ids, optuna.Study)`` of a ``ray.tune`` ``OptunaSearch``."""
    return searcher._ot_trials, searcher._completed_trials, searcher._ot_study


def placement_group_table() -> list[bytes]:
    """The GCS placement-group table, one serialized ``gcs_pb2.PlacementGroupTableData`` per group."""
    from ray._private.state import state

    return state._connect_and_get_accessor().get_placement_group_table()


def set_trial_user_attr(study, frozen_trial, key: str, value) -> None:
    """A user attribute on an existing, still running trial of ``study`` (Optuna has no public setter outside the
    objective's ``Trial``; ``sweeps/launch.py`` marks orphaned asks with it)."""
    study._storage.set_trial_user_attr(frozen_trial._trial_id, key, value)


def set_trial_max_failures(trial, n: int) -> None:
    """How many more failures Tune retries for one trial (``Trial.max_failures``, set from the Tuner's
    ``FailureConfig`` for every trial; Ray 2.60 has no per-trial public setting; ``sweeps/retries.py``)."""
    if not hasattr(trial, "max_failures"):
        raise AttributeError("ray.tune Trial has no max_failures any more: see sweeps/retries.py")
    trial.max_failures = n


def train_failure_policy_api() -> tuple[type, Any]:
    """``(DefaultFailurePolicy, FailureDecision)``: Ray Train V2's default worker-group failure policy (retry up to
    ``FailureConfig(max_failures)``) and its decisions; ``trainables/failures.py`` subclasses the policy."""
    from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy, FailureDecision

    return DefaultFailurePolicy, FailureDecision


class FailurePolicyTrainer:
    """Mixin before a Ray Train V2 trainer class (``class T(FailurePolicyTrainer, TorchTrainer)``): its controller
    gets ``self.failure_policy()`` instead of the default policy. Ray 2.60's trainers take no policy argument;
    their private ``_initialize_and_run_controller`` receives the controller's constructor arguments, among them
    ``failure_policy``."""

    def failure_policy(self):
        raise NotImplementedError

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        if "failure_policy" not in controller_init_kwargs:
            raise RuntimeError("Ray Train no longer hands failure_policy to its controller: see sweeps/compat.py")
        controller_init_kwargs["failure_policy"] = self.failure_policy()
        return super()._initialize_and_run_controller(**controller_init_kwargs)


def train_report_logger():
    """The logger Ray Train V2 logs each ``ray.train.report`` under (``execution/context.py``'s module logger,
    named by the file's path), or None where Ray lays its modules out differently."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return None
    return getattr(context, "logger", None)
