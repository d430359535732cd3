"""Every private Ray Train name the trial side (``trainables``) still needs, in one place; the sweep side's are in
``sweeps/compat.py`` (``trainables`` never imports ``sweeps``). ``tests/unit/test_compat.py`` fails by name when a
Ray release moves one.

- Ray Train V2 takes no failure policy from its user: ``trainables/failures.py`` subclasses its default policy
  and swaps it in where the trainer hands the controller its arguments (``FailurePolicyTrainer``).
- Ray Train V2 logs every ``ray.train.report`` at INFO under a logger named by a file path, out of reach of
  ``RunConfig(logging_config=...)`` (``trainables/loop.py`` quiets it through ``train_report_logger``).
- Ray Tune's public context gives a trial its local staging directory, not the storage directory its checkpoints
  are persisted to; ``tune_trial_storage_dir`` (and ``train_run_storage_dir`` for a Ray Train run) read the latter
  from the (DeveloperAPI) storage context.
"""
from __future__ import annotations

from typing import Any


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


def tune_trial_storage_dir() -> str | None:
    """The directory a Tune function trainable's checkpoints are persisted to (``<storage>/<experiment>/<trial>``),
    where the storage is the local filesystem (or NFS mounted as one); None on ``s3://``/``gs://`` storage or where
    Ray keeps it elsewhere. ``ray.tune.get_context().get_trial_dir()`` is the trial's local staging directory."""
    import ray.tune

    return _local(getattr(ray.tune.get_context(), "get_storage", lambda: None)(), "trial_fs_path")


def train_run_storage_dir() -> str | None:
    """The directory a Ray Train V2 run's checkpoints are persisted to (``<storage>/<run name>``), on local storage;
    None otherwise (see ``tune_trial_storage_dir``)."""
    import ray.train

    return _local(getattr(ray.train.get_context(), "get_storage", lambda: None)(), "experiment_fs_path")


def _local(storage, attr: str) -> str | None:
    fs, path = getattr(storage, "storage_filesystem", None), getattr(storage, attr, None)
    if fs is None or path is None or getattr(fs, "type_name", "") != "local":
        return None
    return path
