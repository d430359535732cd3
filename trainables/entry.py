"""The Train worker entry point, kept light (issue #16).

Ray Train pickles the per-worker function by reference, so the trial driver (the Tune trial process) and the
Train controller import the function's module only to pass it on; this module imports nothing heavy, and the
worker loop (``trainables/loop.py``: timm, torchvision, the regimes, the evaluation) is imported in the
workers, which run it. ``ARX_LIGHT_ENTRY=0`` hands Ray Train ``loop.train_fn_per_worker`` itself (the old way,
for ``arx bench overhead`` comparisons).
"""
from __future__ import annotations

import os
import time


def train_log_level() -> str:
    """Ray Train's log level for arx trials: ``ARX_TRAIN_LOG_LEVEL`` (default WARNING: Ray's per-report INFO
    lines would drown arx's own progress; INFO restores them)."""
    return os.environ.get("ARX_TRAIN_LOG_LEVEL", "WARNING").upper()


def train_fn_per_worker(loop_config: dict, session=None) -> None:
    """Entry point of every Train worker (and of an in-process trial, with its ``TuneSession``): stamps its start,
    then runs ``loop.train_fn_per_worker``."""
    started = time.time()
    from trainables.loop import train_fn_per_worker as run

    run(loop_config, {"timing/worker_start": started, "timing/loop_imported": time.time()}, session)


def worker_fn():
    """The function the trial driver hands Ray Train (see the module docstring)."""
    if os.environ.get("ARX_LIGHT_ENTRY", "1") == "0":
        from trainables.loop import train_fn_per_worker as heavy

        return heavy
    return train_fn_per_worker
