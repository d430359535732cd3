"""Which worker failures a trial retries: infrastructure failures yes, user mistakes no.

Ray Train V2's ``DefaultFailurePolicy`` retries every worker-group error up to
``FailureConfig(max_failures)``, from the last checkpoint. That is right for a killed worker or a lost node,
but a mistake the user must fix (an ``ArxError``: config, dataset, checkpoint) or a NaN loss raised inside a
worker fails the same way on every attempt: retrying wastes minutes and buries the one-line reason under
restarts. ``ArxTorchTrainer`` is ``TorchTrainer`` with ``UserErrorsFailFast`` as its policy: such an error
fails the run at once; everything else (worker death, node loss, preemption, other exceptions) keeps Ray's
own decision and budget.
"""
from __future__ import annotations

import logging

from ray.train.torch import TorchTrainer
from ray.train.v2.api.exceptions import WorkerGroupError

from trainables.compat import FailurePolicyTrainer, train_failure_policy_api
from trainables.errors import ArxError

DefaultFailurePolicy, FailureDecision = train_failure_policy_api()  # Ray Train internals (trainables/compat.py)

logger = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN/inf: the trial fails deterministically (no retry)."""


DETERMINISTIC = (ArxError, NonFiniteLoss)


def user_error(error: BaseException) -> BaseException | None:
    """The deterministic user error inside a Train failure (one of its workers' exceptions), or None."""
    if isinstance(error, DETERMINISTIC):
        return error
    failures = getattr(error, "worker_failures", None) or {}
    return next((e for _, e in sorted(failures.items()) if isinstance(e, DETERMINISTIC)), None)


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line. A DataLoader worker re-raises with the original traceback as the
    message: its last line (``module.Type: message``) is the message then."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    if len(lines) > 1 and text.split(":", 1)[0].endswith(type(error).__name__):
        text = text.split(":", 1)[1].strip()
    return f"{type(error).__name__}: {text}"[:2000]


class UserErrorsFailFast(DefaultFailurePolicy):
    """Ray's default decision, except RAISE at once for a deterministic user error in any worker."""

    def make_decision(self, training_failed_error) -> FailureDecision:
        if isinstance(training_failed_error, WorkerGroupError) and (err := user_error(training_failed_error)):
            logger.warning("arx: not retrying a user error raised in a Train worker: %s", one_line(err))
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class ArxTorchTrainer(FailurePolicyTrainer, TorchTrainer):
    """``TorchTrainer`` whose controller uses ``UserErrorsFailFast`` (Ray 2.60 takes no policy argument:
    ``trainables/compat.py`` swaps it in where the trainer hands it to its controller)."""

    def failure_policy(self):
        return UserErrorsFailFast(self.run_config.failure_config)
