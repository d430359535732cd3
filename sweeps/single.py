"""``arx train``: one trial through the real Ray Train path, with progress lines and a results table."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import ray.train

from sweeps.console import console, fmt, metrics_table
from trainables.config import TrialConfig, apply_overrides, load_yaml
from trainables.tracking import default_tracking_uri
from trainables.trainable import TrackingInfo, TrialFailed, fit_trial
from trainables.errors import ArxError


class ProgressCallback(ray.train.UserCallback):
    """One line per reported epoch (rank 0's metrics). It runs in Ray Train's controller actor, whose output
    goes to the log (sweeps/quiet.py), so the lines travel to the driver through a Ray queue (``lines``)."""

    def __init__(self, epochs: int, lines):
        self.epochs, self.lines = epochs, lines
        self.t0 = time.perf_counter()

    def after_report(self, run_context, metrics, checkpoint):
        m = metrics[0]
        if m.get("arx_done"):
            self.lines.put(f"  evaluation done  ({time.perf_counter() - self.t0:.0f} s)")
            return
        logs = "  ".join(f"{k.removeprefix('train/')}={fmt(v)}" for k, v in m.items()
                         if k.startswith("train/") and k not in ("train/lr",))
        self.lines.put(f"  epoch {m.get('epoch', 0) + 1}/{self.epochs}  {logs}")


@contextmanager
def printed_queue():
    """A Ray queue whose lines a driver thread prints until the block ends (then the rest)."""
    from ray.util.queue import Empty, Queue

    lines, done = Queue(), threading.Event()

    def pump():
        while not (done.is_set() and lines.empty()):
            try:
                console.print(lines.get(timeout=0.5))
            except Empty:
                pass

    thread = threading.Thread(target=pump, daemon=True, name="arx-progress")
    thread.start()
    try:
        yield lines
    finally:
        done.set()
        thread.join(timeout=10)
        lines.shutdown()


def run_single(config: Path | None, overrides: list[str], results: Path, address: str | None) -> dict:
    from sweeps.raysession import init_ray

    data = load_yaml(config) if config else {}
    cfg = TrialConfig.parse(apply_overrides(data, overrides))
    results.mkdir(parents=True, exist_ok=True)
    uri = default_tracking_uri(results)
    init_ray(address)
    console.print(f"arx train: {cfg.regime.name} on {cfg.dataset.name} with {cfg.model.backbone}, "
                  f"{cfg.resources.num_workers} worker(s), {cfg.optim.epochs} epoch(s); MLflow: {uri}")
    info = TrackingInfo(uri=uri, experiment=cfg.name, trial_id=f"train-{int(time.time())}")
    try:
        with printed_queue() as lines:
            out = fit_trial(cfg, info.trial_id, str((results / "ray").resolve()), info,
                            callbacks=[ProgressCallback(cfg.optim.epochs, lines)])
    except TrialFailed as e:
        raise ArxError(f"the trial failed: {e}") from None
    console.print(metrics_table(f"{cfg.name}: final metrics", out))
    console.print(f"MLflow run {out['mlflow_run_id']} in experiment {cfg.name!r}; browse with `arx ui`")
    return out
