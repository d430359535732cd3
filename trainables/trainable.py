"""The trial driver: one trial = one Ray Train ``TorchTrainer`` fit, logged as one MLflow run.

``fit_trial`` is used by ``arx train`` directly and by ``tune_trial``, the Tune function trainable of a
sweep (Ray Train V2 + Tune: the Tuner runs this function, which builds and fits the TorchTrainer; metrics
reach Tune through ``TuneReportCallback``). Runs are named by trial id (no timestamps), so a restored
trial resumes its Train run from the latest checkpoint and finds its MLflow run by the trial-id tag.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from trainables.config import TrialConfig
from trainables.data._cache import cache_dir
from trainables.failures import ArxTorchTrainer, one_line, user_error
from trainables.entry import train_log_level, worker_fn
from trainables.timing import overhead_seconds, stamp
from trainables.tracking import (  # the trial-run functions live in tracking.py
    REASON_TAG, STATUS_TAG, SWEEP_TAG, TrackingInfo, close_run, ensure_run, finished_metrics)


class TrialFailed(RuntimeError):
    """Raised by the trial driver so Tune marks the trial ERROR and Optuna marks it FAIL."""


def make_trainer(cfg: TrialConfig, run_name: str, storage_path: str, tracking: dict | None,
                 callbacks: list | None = None, max_failures: int = 2) -> TorchTrainer:
    res = cfg.resources
    per_worker: dict[str, float] = {"CPU": res.cpus_per_worker}
    if res.use_gpu:
        per_worker["GPU"] = res.gpus_per_worker
    return ArxTorchTrainer(  # a user error raised in a worker is not retried (failures.py)
        worker_fn(),
        train_loop_config={"trial": cfg.to_dict(), "tracking": tracking, "data_cache": cache_dir()},
        scaling_config=ray.train.ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=storage_path, callbacks=callbacks or [],
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            logging_config=ray.train.LoggingConfig(log_level=train_log_level()),
        ),
    )


def fit_trial(cfg: TrialConfig, run_name: str, storage_path: str | Path, info: TrackingInfo | None,
              callbacks: list | None = None, max_failures: int = 2, stamps: dict | None = None) -> dict[str, Any]:
    """Fit one trial; returns the final metrics. Raises ``TrialFailed`` with the reason on failure.
    ``stamps``: the driver's phase stamps so far (``trainables/timing.py``), completed here with rank 0's and
    written to ``<storage>/<run_name>/timing.json``; ``cost/overhead_seconds`` goes to MLflow."""
    stamps = stamps if stamps is not None else {}
    stamps.setdefault("timing/trial_start", time.time())
    run_id = ensure_run(cfg, info) if info else None
    outbox = outbox_dir(storage_path, run_name)
    tracking = loop_tracking(info, run_id, outbox) if info else None
    trainer = make_trainer(cfg, run_name, str(storage_path), tracking, callbacks, max_failures)
    stamp(stamps, "trainer_start")
    try:
        result = trainer.fit()
    except Exception as e:  # a Train failure after its retries (none for a user error): record why, fail
        fail_trial(info, run_id, outbox, one_line(err) if (err := user_error(e)) else root_cause(e))
    stamp(stamps, "fit_end")
    return complete_trial(info, run_id, outbox, result.metrics, stamps, storage_path, run_name)


def fail_trial(info: TrackingInfo | None, run_id: str | None, outbox: str | None, reason: str,
               raise_: bool = True) -> None:
    """Close the trial's MLflow run as failed with ``reason`` (or queue the close); raise ``TrialFailed``."""
    if info:
        close_or_queue(info.uri, run_id, "failed", outbox, reason)
    if raise_:
        raise TrialFailed(reason) from None


def complete_trial(info: TrackingInfo | None, run_id: str | None, outbox: str | None, metrics: dict | None,
                   stamps: dict, storage_path: str | Path, run_name: str) -> dict[str, Any]:
    """The end of a trial either path ran (Ray Train or in process): its final metrics (``TrialFailed`` without
    them), rank 0's stamps merged, ``cost/overhead_seconds``, the MLflow run closed, ``timing.json`` written."""
    metrics = dict(metrics or {})
    if "arx_failed" in metrics or not metrics.get("arx_done"):
        fail_trial(info, run_id, outbox, metrics.get("arx_failed", "the trial ended without final metrics"))
    stamps |= {k: metrics.pop(k) for k in [k for k in metrics if k.startswith("timing/")]}  # rank 0's
    now = time.time()
    if (overhead := overhead_seconds(stamps, now)) is not None:  # this attempt's, up to the MLflow close
        metrics |= {"cost/overhead_seconds": overhead, "cost/trial_wall_seconds": now - stamps["timing/trial_start"]}
    if info:
        metrics["arx_tracking_pending"] = close_or_queue(info.uri, run_id, "completed", outbox, final={
            k: metrics[k] for k in ("cost/overhead_seconds", "cost/trial_wall_seconds") if k in metrics})
    stamp(stamps, "trial_end")
    write_timing(storage_path, run_name, stamps)
    return {"mlflow_run_id": run_id, **metrics}


def write_timing(storage_path: str | Path, run_name: str, stamps: dict) -> None:
    """The trial's phase stamps as ``timing.json`` in its Train run directory (local storage only)."""
    if "://" not in str(storage_path) and (d := Path(storage_path) / run_name).is_dir():
        (d / "timing.json").write_text(json.dumps(stamps))


def outbox_dir(storage_path: str | Path, run_name: str) -> str | None:
    """Where rank 0 spools MLflow writes the tracking server has not taken yet (local storage only)."""
    return None if "://" in str(storage_path) else str(Path(storage_path) / run_name / "mlflow_outbox")


def loop_tracking(info: TrackingInfo, run_id: str, outbox: str | None) -> dict:
    """What the per-worker loop needs to log to the trial's MLflow run (``RankZeroTracker``)."""
    return {"uri": info.uri, "run_id": run_id, "outbox": outbox, "drain_s": drain_seconds()}


def drain_seconds() -> float:
    """How long a finished trial keeps retrying undelivered MLflow writes (``ARX_TRACKING_DRAIN_S``, 60)."""
    return float(os.environ.get("ARX_TRACKING_DRAIN_S", "60"))


def close_or_queue(uri: str, run_id: str, status: str, outbox: str | None, reason: str | None = None,
                   final: dict | None = None) -> int:
    """Close the run after what rank 0 left undelivered (and ``final``: the driver's own metrics); with the
    server unreachable, queue the close in the outbox instead (``arx sync``). Returns the number of writes
    still undelivered."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from trainables.outbox import Outbox, quick_http

    box = Outbox(MlflowClient(tracking_uri=uri), run_id, outbox)
    if items := [Metric(k, float(v), int(time.time() * 1000), 0) for k, v in (final or {}).items() if v is not None]:
        box.log_batch(run_id, metrics=items)
    if box.drain(min(10.0, drain_seconds())) == 0:
        try:
            with quick_http():
                close_run(uri, run_id, status, reason)
            return 0
        except Exception:  # noqa: BLE001 - unreachable: the outbox retries it
            pass
    box.close(status, reason, STATUS_TAG, REASON_TAG)
    return len(box.queue)


def root_cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:2000]


def tune_trial(config: dict) -> None:
    """Tune function trainable: one sweep trial (its config holds the TrialConfig + tracking info), through Ray
    Train or, for a single worker, in this process (``config["trial_path"]``, set by the launcher)."""
    stamps = {"timing/trial_start": time.time()}
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = TrialConfig.parse(config["trial"])
    t = config["tracking"]
    info = TrackingInfo(uri=t["uri"], experiment=t["experiment"], parent_run_id=t.get("parent_run_id"),
                        trial_id=trial_id, extra_tags={SWEEP_TAG: t["experiment"]})
    storage = os.path.join(config["storage_path"], "train_runs")
    done = finished_metrics(cfg, info)
    if done is not None:  # finished before a driver restart: report, never run twice
        ray.tune.report(done)
        return
    if config.get("trial_path", "train") == "process":  # 1 worker: in this process (trainables/inprocess.py)
        from trainables.inprocess import run_in_process

        run_in_process(cfg, f"trial-{trial_id}", storage, info, stamps)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    fit_trial(cfg, f"trial-{trial_id}", storage, info, callbacks=[TuneReportCallback()],
              max_failures=config.get("train_max_failures", 2), stamps=stamps)
