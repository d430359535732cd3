"""The driver's data check: every dataset a sweep reads from disk is opened once before any trial starts.

A missing ``dataset.root`` or a wrong layout is then one ``DatasetError`` line in the driver (the CLI prints
it and exits 2) instead of a traceback inside every Train worker. Only the test split's index is read (its
file lists / arrays, not every image), so the check takes seconds even for full datasets.
"""
from __future__ import annotations

from collections.abc import Iterable

from trainables.data.base import build_dataset
from trainables.errors import DatasetError


def check_dataset(cfg) -> None:
    """Open the test split of ``cfg`` (a ``DatasetConfig``) if it reads files; raise its one-line error."""
    from trainables.data.base import DATASETS

    if not DATASETS.get(cfg.name).needs_root:
        return
    if not cfg.root.is_dir():
        raise DatasetError(f"{cfg.name}: dataset.root {cfg.root} is not a directory; "
                           f"expected {_layout(cfg.name)}")
    build_dataset(cfg).load("test")


def check_datasets(cfgs: Iterable) -> None:
    for cfg in cfgs:
        check_dataset(cfg)


def _layout(name: str) -> str:
    import importlib

    from trainables.data.base import DATASETS

    module = importlib.import_module(DATASETS.get(name).__module__)
    return getattr(module, "LAYOUT", f"the {name} layout (see trainables/data/{name}.py)")


def check_trial_data(trial) -> None:
    """The datasets a trial (a ``TrialConfig``) reads: its training data and its shift datasets."""
    shifts = getattr(trial.evaluation, "shift", ())
    check_datasets([trial.dataset, *(s.dataset for s in shifts)])
    if shifts:
        from trainables.errors import ConfigError
        from trainables.evaluation.shift import class_name_problem

        if problem := class_name_problem(trial):
            raise ConfigError(problem)
