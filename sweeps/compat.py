"""Every private Optuna / Ray attribute the sweep side still needs, in one place (tests/unit/test_compat.py fails
loudly when a release renames one). Everything else in arx uses public APIs only.

- Ray Tune's ``OptunaSearch`` keeps its trial map, its finished set and its study in private attributes, and
  has no public hook for telling a trial PRUNED or FAIL explicitly (``sweeps/space.py``).
- Ray 2.60 has no public reader of the GCS placement-group table with ``creator_actor_dead`` that works without
  the dashboard (``sweeps/orphans.py``).

The Ray Train internals the trial side needs are in ``trainables/compat.py`` (``trainables`` never imports
``sweeps``, DESIGN.md); these two modules are the only ones that touch private Ray / Optuna names (a test checks).
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

