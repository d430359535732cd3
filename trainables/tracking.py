"""arx's MLflow schema and every write to it: tag names, the sweep's parent run, trial runs, closing them, and
the logging from rank 0 of a trial (Ray Train V2 has no MLflow callback; DESIGN.md).

Layout: experiment = sweep name (``EXPERIMENT_KIND_TAG``: a model-training experiment); one parent run per
launch (``ROLE_TAG`` = ``ROLE_SWEEP``, ``TUNE_NAME_TAG``, ``OBJECTIVES_TAG`` JSON, ``CONSTRAINTS_TAG`` JSON,
versions, artifact ``sweep.yaml``; closed with ``sweep/trials_*`` metrics and ``PARETO_TRIALS_TAG``); one child
run per trial (``PARENT_TAG``, ``ROLE_TAG`` = ``ROLE_TRIAL``, ``TRIAL_ID_TAG``, ``REGIME_TAG``, ``DATASET_TAG``,
``BACKBONE_TAG``, ``STATUS_TAG`` running | completed | failed | pruned, ``REASON_TAG``; pruned trials also
``RUNG_TAG``, ``SAVED_TAG``; the gradient-masking checks ``SANITY_PREFIX`` + check). ``analysis/runs.py`` reads
the same names back.

The trial driver (``trainable.py``) creates or finds the trial's MLflow run (``ensure_run``) and passes
``{"uri", "run_id"}``; rank 0 resumes that run by id, so restarts never duplicate runs. Other ranks get a
tracker that does nothing.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time

from dataclasses import dataclass, field
from typing import Any

TAG_PREFIX = "arx."
PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG, ROLE_SWEEP, ROLE_TRIAL = "arx.role", "sweep", "trial"
STATUS_TAG = "arx.status"            # running | completed | failed | pruned
REASON_TAG = "arx.failure_reason"
TRIAL_ID_TAG = "arx.trial_id"
REGIME_TAG = "arx.regime"
DATASET_TAG = "arx.dataset"
BACKBONE_TAG = "arx.backbone"
SWEEP_TAG = "arx.sweep"              # a trial run's sweep (experiment) name
NODE_ID_TAG = "arx.node_id"
SKIPPED_CORRUPT_TAG = "arx.dataset.skipped_corrupt"    # files dataset.skip_corrupt left out
UNBOXED_TAG = "arx.dataset.unboxed"                    # pets test images without a cat/dog box
TUNE_NAME_TAG = "arx.tune_name"
OBJECTIVES_TAG = "arx.objectives"
CONSTRAINTS_TAG = "arx.constraints"
GIT_SHA_TAG, RAY_VERSION_TAG, TORCH_VERSION_TAG = "arx.git_sha", "arx.ray_version", "arx.torch_version"
PARETO_TRIALS_TAG = "arx.pareto_trials"
REPORT_TAG = "arx.report"
RUNG_TAG = "arx.rung"                # pruned: the rung it stopped at (sweeps/scheduler.py)
SAVED_TAG = "arx.device_seconds_saved"
ORPHAN_TAG = "arx.orphan"            # a run a killed driver started before Tune saved its trial (sweeps/orphan_runs.py)
SANITY_PREFIX = "arx.sanity."        # + check name: "FLAG: ..." / "ok: ..."; SANITY_FLAGGED_TAG lists the flags
SANITY_FLAGGED_TAG = SANITY_PREFIX + "flagged"


class RankZeroTracker:
    def __init__(self, tracking: dict | None, rank: int):
        self.enabled = bool(tracking and tracking.get("run_id")) and rank == 0
        self.pending = 0
        if self.enabled:
            from mlflow.tracking import MlflowClient

            from trainables.outbox import Outbox

            self.run_id = tracking["run_id"]  # writes go through an outbox: a server outage never stops training
            self.client = Outbox(MlflowClient(tracking_uri=tracking["uri"]), self.run_id, tracking.get("outbox"))
            self.drain_s = float(tracking.get("drain_s", 60.0))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if _finite(v)]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def fail(self, reason: str) -> None:
        self.set_tags({STATUS_TAG: "failed", REASON_TAG: reason})

    def finish(self, final: dict[str, float], tags: dict[str, str], artifacts: dict,
               settings: dict | None = None) -> None:
        """Final metrics (step 0), tags, the effective settings as ``effective.*`` params, ``metrics.json``,
        figure artifacts (PNG) and tables (``pandas.DataFrame`` -> ``<name>.parquet``)."""
        if not self.enabled:
            return
        self.log_metrics(final, step=0)
        self.set_tags({TAG_PREFIX + k if not k.startswith(TAG_PREFIX) else k: v for k, v in tags.items()})
        self.log_params({f"effective.{k}": v for k, v in (settings or {}).items()})
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "metrics.json")
            with open(path, "w") as f:
                json.dump(final, f, indent=2, sort_keys=True)
            self.client.log_artifact(self.run_id, path)
            for name, item in artifacts.items():
                self.client.log_artifact(self.run_id, _write_artifact(d, name, item))
        self.pending = self.client.drain(self.drain_s)  # bounded; what is left stays for `arx sync`

    def log_params(self, params: dict) -> None:
        if self.enabled and params:
            from mlflow.entities import Param

            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])


def _write_artifact(d: str, name: str, item) -> str:
    """A table as parquet, a matplotlib figure as PNG (closed afterwards); returns the file path."""
    if hasattr(item, "to_parquet"):
        path = os.path.join(d, f"{name}.parquet")
        item.to_parquet(path, index=False)
        return path
    path = os.path.join(d, f"{name}.png")
    item.savefig(path, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(item)
    return path


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def default_tracking_uri(results_dir: str | os.PathLike) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute sqlite file under the results directory."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    path = os.path.abspath(os.path.join(results_dir, "mlflow.db"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{path}"


# MLflow 3's experiment kind (its UI's value for model training): the UI opens such an experiment on its runs
# (not the GenAI overview of traces); MLflow 3.17's JS: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def get_or_create_experiment(client, name: str) -> str:
    """Experiment id by name (marked as a model-training experiment); a new sqlite-backed experiment stores
    artifacts next to the database."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made before arx set the kind
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    uri = client.tracking_uri
    location = None
    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///"):]
        location = "file://" + os.path.join(os.path.dirname(os.path.abspath(db)), "mlartifacts")
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:  # created concurrently by another trial driver
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# ---------------------------------------------------------------------------------------------------
# the sweep's parent run
# ---------------------------------------------------------------------------------------------------
def open_parent_run(uri: str, experiment: str, tune_name: str, objectives: list[dict], constraints: list[str],
                    versions: dict[str, str], sweep_yaml: str, resume: bool = False) -> str:
    """The launch's parent run (``resume``: the existing one of ``tune_name``, set RUNNING again); returns its id.
    ``versions``: ``{"git_sha", "ray_version", "torch_version"}``; ``sweep_yaml`` is logged as ``sweep.yaml``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = get_or_create_experiment(client, experiment)
    if resume:
        runs = client.search_runs([exp_id], f"tags.`{ROLE_TAG}` = '{ROLE_SWEEP}' and tags.`{TUNE_NAME_TAG}` = "
                                  f"'{tune_name}'", max_results=1)
        if runs:
            client.update_run(runs[0].info.run_id, status="RUNNING")
            return runs[0].info.run_id
    tags = {ROLE_TAG: ROLE_SWEEP, TUNE_NAME_TAG: tune_name, OBJECTIVES_TAG: json.dumps(objectives),
            CONSTRAINTS_TAG: json.dumps([str(c) for c in constraints]),
            **{TAG_PREFIX + k: str(v) for k, v in versions.items()}}
    run = client.create_run(exp_id, tags=tags, run_name=tune_name)
    client.log_text(run.info.run_id, sweep_yaml, "sweep.yaml")
    return run.info.run_id


def close_parent_run(client, run_id: str, statuses: list[str], pareto_trials: list[str]) -> None:
    """Count the trials by status (``sweep/trials_*``), name the Pareto trials and finish the parent run."""
    for status in ("completed", "failed", "pruned"):
        client.log_metric(run_id, f"sweep/trials_{status}", sum(s == status for s in statuses))
    client.set_tag(run_id, PARETO_TRIALS_TAG, ",".join(map(str, pareto_trials)))
    client.set_terminated(run_id, "FINISHED")


# ---------------------------------------------------------------------------------------------------
# trial runs
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackingInfo:
    uri: str
    experiment: str
    parent_run_id: str | None = None
    trial_id: str = "local"
    extra_tags: dict[str, str] = field(default_factory=dict)


def run_tags(cfg: Any, info: TrackingInfo) -> dict[str, str]:
    """The tags of a new trial run (``cfg``: its ``TrialConfig``)."""
    tags = {ROLE_TAG: ROLE_TRIAL, TRIAL_ID_TAG: info.trial_id, REGIME_TAG: cfg.regime.name,
            DATASET_TAG: cfg.dataset.name, BACKBONE_TAG: cfg.model.backbone, STATUS_TAG: "running",
            **info.extra_tags}
    if info.parent_run_id:
        tags[PARENT_TAG] = info.parent_run_id
    return tags


def ensure_run(cfg: Any, info: TrackingInfo) -> str:
    """Find the trial's MLflow run by its trial-id tag (restored trials) or create it; returns its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info.uri)
    exp_id = get_or_create_experiment(client, info.experiment)
    query = f"tags.`{TRIAL_ID_TAG}` = '{info.trial_id}'"
    if info.parent_run_id:
        query += f" and tags.`{PARENT_TAG}` = '{info.parent_run_id}'"
    found = client.search_runs([exp_id], query, max_results=1) if info.trial_id != "local" else []
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(exp_id, tags=run_tags(cfg, info), run_name=f"{cfg.regime.name}-{info.trial_id}")
    from mlflow.entities import Param

    params = [Param(k, str(v)[:6000]) for k, v in cfg.flat().items()]
    for i in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[i:i + 100])
    return run.info.run_id


def close_run(uri: str, run_id: str, status: str, reason: str | None = None) -> None:
    """Final status (and reason) of a trial run; a run the sweep's scheduler marked pruned stays pruned."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if client.get_run(run_id).data.tags.get(STATUS_TAG) == "pruned":  # stopped by the sweep's scheduler: final
        return
    client.set_tag(run_id, STATUS_TAG, status)
    if reason and REASON_TAG not in client.get_run(run_id).data.tags:  # rank 0 may have said why already
        client.set_tag(run_id, REASON_TAG, reason[:5000])
    client.set_terminated(run_id, "FINISHED" if status == "completed" else "FAILED")


def finished_metrics(cfg: Any, info: TrackingInfo) -> dict | None:
    """The final metrics of this trial's MLflow run if it already completed, else None."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info.uri)
    exp = client.get_experiment_by_name(info.experiment)
    if exp is None:
        return None
    query = f"tags.`{TRIAL_ID_TAG}` = '{info.trial_id}' and tags.`{STATUS_TAG}` = 'completed'"
    runs = client.search_runs([exp.experiment_id], query, max_results=1)
    if not runs:
        return None
    return {**runs[0].data.metrics, "arx_done": True, "mlflow_run_id": runs[0].info.run_id}
