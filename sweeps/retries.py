"""Tune-level retries of in-process trials (``trainables/inprocess.py``) stop at user errors.

A single-worker trial that runs in the Tune trial process has no Ray Train controller to retry it, so the Tuner's
``FailureConfig(max_failures)`` carries ``retries.worker`` too: a crash or a killed trial process is restarted from
its last checkpoint. A user error or a NaN loss would fail the same way on every attempt, so the trial reports
``arx_failed`` before it raises, and ``UserErrorsFinal`` lowers that trial's budget to the failures it already had:
Tune then marks it ERROR at once (Optuna FAIL), as Ray Train's ``UserErrorsFailFast`` does (``trainables/failures.py``).
"""
from __future__ import annotations

from ray import tune

from sweeps.compat import set_trial_max_failures


class UserErrorsFinal(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "arx_failed" in result:
            set_trial_max_failures(trial, 0)
