"""sweeps/compat.py and trainables/compat.py: the private Optuna / Ray Tune / Ray Train names arx relies on still exist with the expected types.
A release that renames or retypes one fails here, by name, rather than deep inside a sweep."""
import inspect

import optuna
import pytest

from sweeps.compat import optuna_search_state
from sweeps.space import ArxOptunaSearch, SearchSpace
from sweeps.spec import load_spec


def test_optuna_search_state_is_the_trial_map_the_told_set_and_the_study(tmp_path):
    spec = load_spec(None)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = ArxOptunaSearch(space=SearchSpace(spec), metric=spec.metric_names, mode=spec.modes,
                               sampler=optuna.samplers.RandomSampler(seed=0), study_name="s", storage=storage)
    searcher.suggest("a")
    trials, told, study = optuna_search_state(searcher)
    assert isinstance(trials, dict) and isinstance(trials["a"], optuna.Trial), "OptunaSearch._ot_trials changed"
    assert isinstance(told, set) and not told, "OptunaSearch._completed_trials changed"
    assert isinstance(study, optuna.Study) and study.study_name == "s", "OptunaSearch._ot_study changed"
    searcher.on_trial_complete("a", {"acc/top1": 0.5, "robust/pgd": 0.5, "explain/box_iou": 0.5})
    assert told == {"a"}  # the searcher writes through the same set
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values == [0.5, 0.5, 0.5]


def test_train_failure_policy_api_is_ray_trains_default_policy_and_decisions():
    import ray.train

    from trainables.compat import train_failure_policy_api
    from trainables.failures import UserErrorsFailFast

    policy_cls, decision = train_failure_policy_api()
    assert {"RAISE", "RETRY"} <= set(decision.__members__), "Ray Train's FailureDecision changed"
    policy = UserErrorsFailFast(ray.train.FailureConfig(max_failures=2))
    assert isinstance(policy, policy_cls) and callable(policy.make_decision)


def test_ray_train_still_hands_the_controller_its_failure_policy_where_the_mixin_swaps_it():
    """The trainer's private ``_initialize_and_run_controller`` gets the controller's arguments, ``failure_policy``
    among them, and the controller takes that argument: the swap in trainables/compat.py reaches the controller."""
    from ray.train.v2._internal.execution.controller.controller import TrainController
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    assert "failure_policy" in inspect.signature(TrainController.__init__).parameters
    fit = inspect.getsource(DataParallelTrainer)
    assert "self._initialize_and_run_controller(" in fit and "failure_policy=" in fit, "Ray Train's hook moved"

    from trainables.compat import FailurePolicyTrainer

    class Base:
        def _initialize_and_run_controller(self, **kwargs):
            return kwargs

    class Swapped(FailurePolicyTrainer, Base):
        def failure_policy(self):
            return "mine"

    assert Swapped()._initialize_and_run_controller(failure_policy="default", x=1) == {"failure_policy": "mine", "x": 1}
    with pytest.raises(RuntimeError, match="no longer hands failure_policy"):
        Swapped()._initialize_and_run_controller(x=1)

    import ray.train

    from trainables.failures import ArxTorchTrainer, UserErrorsFailFast

    trainer = ArxTorchTrainer(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1),
                              run_config=ray.train.RunConfig(failure_config=ray.train.FailureConfig(max_failures=3)))
    assert isinstance(trainer.failure_policy(), UserErrorsFailFast)


def test_train_report_logger_is_the_logger_ray_train_reports_under():
    import logging

    from trainables.compat import train_report_logger

    logger = train_report_logger()
    assert isinstance(logger, logging.Logger), "ray.train.v2 execution/context.py has no module logger any more"
    import ray.train.v2._internal.execution.context as context

    assert "logger.info(" in inspect.getsource(context), "Ray Train reports under another logger now"


def test_no_module_but_compat_reaches_into_ray_or_optuna_internals():
    """Private Ray / Optuna modules are imported only in the two compat modules: sweeps/compat.py (the sweep side)
    and trainables/compat.py (the trial side, which never imports sweeps)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    private = re.compile(r"^\s*(from|import)\s+(ray|optuna)(\.\w+)*\._\w", re.M)
    offenders = [str(p.relative_to(root)) for pkg in ("trainables", "sweeps", "analysis")
                 for p in sorted((root / pkg).rglob("*.py"))
                 if p.relative_to(root).as_posix() not in ("sweeps/compat.py", "trainables/compat.py")
                 and private.search(p.read_text())]
    assert offenders == []
    for allowed in ("sweeps", "trainables"):  # the pattern finds what it looks for
        assert private.search((root / allowed / "compat.py").read_text())
