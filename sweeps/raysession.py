"""Starting / joining Ray for arx commands, with the environment the Train path needs."""
from __future__ import annotations

import logging
import os

import ray

from trainables.errors import ArxError

TRIAL_SLOT = "trial_slot"  # custom resource held by a trial driver instead of a CPU (DESIGN.md)


def init_ray(address: str | None = None, trial_slots: int | None = None) -> dict:
    """``ray.init`` on ``address`` (or RAY_ADDRESS), else a local cluster; returns the cluster resources."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # no preemption-watcher actor per Train run (one process fewer per trial; Ray's public switch, issue #16):
    # a drained node's workers fail and retries.worker restarts them from the last checkpoint
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # per-epoch results carry train/* only; the objectives arrive with the final result (or the trial fails)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # save the sweep's state often (kill + resume)
    # MLflow's usage telemetry phones home from every trial process; offline (clusters, CI) its thread removes
    # an environment variable while requests reads the environment, which failed trial REST calls under load
    # (seen twice at 64 concurrent trials by the tracking load bench). MLFLOW_DISABLE_TELEMETRY=false restores it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from sweeps.quiet import engage

    engage()  # under the CLI: Ray's output from here on goes to the log file
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return ray.cluster_resources()
    env_vars = {k: os.environ[k] for k in ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_V2_ENABLED",
                                           "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "MLFLOW_DISABLE_TELEMETRY",
                                           "MLFLOW_TRACKING_URI", "OMP_NUM_THREADS", "ARX_TRAIN_LOG_LEVEL") if k in os.environ}
    kwargs = dict(runtime_env={"env_vars": env_vars}, logging_level=logging.WARNING,
                  log_to_driver=True, configure_logging=True)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(resources={TRIAL_SLOT: trial_slots or 64}, include_dashboard=False, **kwargs)
    except ConnectionError as e:
        raise ArxError(f"cannot reach the Ray cluster at {address!r}: {e}") from None
    return ray.cluster_resources()
