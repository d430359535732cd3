"""The trial-overhead optimisations (issue #16) change no number: the same tiny trial with them switched off
(``ARX_LIGHT_ENTRY=0``: Ray Train gets the heavy loop function; ``ARX_DATA_CACHE=0``: every worker draws its
data) and on (cold and warm per-node data cache) gives bit-identical final metrics on CPU."""
import json
from pathlib import Path

import mlflow
import pytest

from trainables.config import TrialConfig
from trainables.trainable import TrackingInfo, fit_trial

pytestmark = pytest.mark.integration

CLOCK = ("time", "per_s", "seconds")  # wall-clock measurements differ run to run by nature


def _numbers(out: dict) -> dict:
    return {k: v for k, v in out.items() if k not in ("mlflow_run_id", "arx_tracking_pending")
            and not any(c in k for c in CLOCK)}


def test_final_metrics_identical_with_overhead_optimisations_off_and_on(ray_cluster, tiny_trial, tmp_path,
                                                                        monkeypatch):
    cfg = TrialConfig.parse(tiny_trial)
    monkeypatch.setenv("ARX_LIGHT_ENTRY", "0")
    monkeypatch.setenv("ARX_DATA_CACHE", "0")
    off = fit_trial(cfg, "off", str(tmp_path / "ray"), None)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ARX_LIGHT_ENTRY", "1")
    monkeypatch.setenv("ARX_DATA_CACHE", str(cache))
    info = TrackingInfo(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="it-overhead", trial_id="o1")
    cold = fit_trial(cfg, "cold", str(tmp_path / "ray"), info)
    assert len(list(cache.glob("shapes-*.pt"))) == 2  # train and test drawn once, now on disk
    warm = fit_trial(cfg, "warm", str(tmp_path / "ray"), None)
    assert "acc/top1" in _numbers(off) and len(_numbers(off)) > 5
    assert _numbers(off) == _numbers(cold) == _numbers(warm)  # exact float equality, every metric
    # the driver logged the overhead of the tracked trial, and left its stamps next to the Train run
    run = mlflow.MlflowClient(info.uri).get_run(cold["mlflow_run_id"])
    overhead, wall = run.data.metrics["cost/overhead_seconds"], run.data.metrics["cost/trial_wall_seconds"]
    assert 0 < overhead < wall
    stamps = json.loads((Path(tmp_path / "ray" / "cold" / "timing.json")).read_text())
    assert stamps["timing/trial_start"] < stamps["timing/worker_start"] < stamps["timing/eval_end"] <= stamps["timing/trial_end"]
