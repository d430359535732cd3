"""MLflow logging from rank 0 of a trial (Ray Train V2 has no MLflow callback; DESIGN.md).

The trial driver (``trainable.py``) creates or finds the trial's MLflow run and passes
``{"uri", "run_id"}``; rank 0 resumes that run by id, so restarts never duplicate runs. Other ranks get a
tracker that does nothing.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time

STATUS_TAG = "arx.status"
REASON_TAG = "arx.failure_reason"


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
        self.set_tags({f"arx.{k}" if not k.startswith("arx.") else k: v for k, v in tags.items()})
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
