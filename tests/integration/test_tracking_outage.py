"""The MLflow tracking server goes away mid-trial (a restart on the cluster): a real ``mlflow server`` process
is killed after the first epoch is logged and started again epochs later; training never waits for it, and
the run ends with every epoch's metrics. If it never comes back within the trial, the trial still completes,
reports its undelivered writes, and ``arx sync`` delivers them from the trial's outbox afterwards."""
import copy
import json
import os
import signal
import sys
import threading
from pathlib import Path

import mlflow
import pytest

from analysis.bench import _services as services
from trainables.config import TrialConfig
from trainables.outbox import PENDING
from trainables.trainable import TrackingInfo, fit_trial

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_faults import wait_for  # noqa: E402
from test_spec_fuzz import run_cli  # noqa: E402


class MlflowServer(services.MlflowServer):
    """A real ``mlflow server`` (sqlite backend, local artifacts) that the test kills and starts again."""

    def __init__(self, root: Path):
        super().__init__(f"sqlite:///{root / 'mlflow.db'}", root, workers=1)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the whole server: uvicorn and its job runner
        self.proc.wait()
        wait_for(lambda: not self.healthy(), 60, "mlflow server down", every=0.2)


@pytest.fixture
def server(tmp_path):
    srv = MlflowServer(tmp_path)
    srv.start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()


def _cfg(tiny_trial, epochs: int) -> TrialConfig:
    d = copy.deepcopy(tiny_trial)
    d["dataset"] |= {"train_size": 256, "params": {"n_train": 256, "n_test": 64}}
    d["optim"] = {"epochs": epochs, "batch_size": 16, "lr": 2e-3}
    return TrialConfig.parse(d)


class Trial(threading.Thread):
    def __init__(self, cfg, name, storage, info):
        super().__init__(daemon=True)
        self.args, self.result, self.error = (cfg, name, storage, info), None, None

    def run(self):
        try:
            self.result = fit_trial(*self.args, max_failures=0)
        except Exception as e:  # reported by the test
            self.error = e


def _reports(run_dir: Path) -> int:
    """How many ``ray.train.report`` calls (epochs) the Train controller has registered."""
    try:
        return json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())["current_report_index"]
    except (OSError, ValueError, KeyError):
        return 0


def _run_id(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return runs[0].info.run_id if runs else None


def _steps(client, run_id, key="train/loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _start_and_lose_the_server(tiny_trial, tmp_path, server, epochs, name):
    info = TrackingInfo(uri=server.uri, experiment=name, trial_id="o1")
    trial = Trial(_cfg(tiny_trial, epochs), name, tmp_path / "ray", info)
    trial.start()
    client = mlflow.MlflowClient(server.uri)
    run_id = wait_for(lambda: _run_id(client, name), 300, "the trial's MLflow run", every=0.5)
    wait_for(lambda: _steps(client, run_id) == [0], 300, "epoch 0 logged", every=0.5)
    server.stop()
    return trial, client, run_id


def test_server_restart_mid_trial_loses_nothing(ray_cluster, tiny_trial, tmp_path, server, monkeypatch):
    monkeypatch.setenv("ARX_TRACKING_DRAIN_S", "120")
    trial, client, run_id = _start_and_lose_the_server(tiny_trial, tmp_path, server, 5, "it-outage")
    wait_for(lambda: _reports(tmp_path / "ray" / "it-outage") >= 3, 600, "2 epochs trained while the server is down", 0.5)
    assert trial.is_alive()  # training went on without the server
    server.start()
    trial.join(timeout=900)
    assert trial.error is None and trial.result is not None, trial.error
    assert trial.result["arx_tracking_pending"] == 0
    assert _steps(client, run_id) == [0, 1, 2, 3, 4]  # every epoch, once
    run = client.get_run(run_id)
    assert run.data.metrics["acc/top1"] == pytest.approx(trial.result["acc/top1"])
    assert run.data.tags["arx.status"] == "completed" and run.info.status == "FINISHED"
    assert "metrics.json" in [a.path for a in client.list_artifacts(run_id)]
    assert not list((tmp_path / "ray").rglob(PENDING))


def test_server_never_back_trial_completes_and_arx_sync_delivers(ray_cluster, tiny_trial, tmp_path, server, monkeypatch):
    monkeypatch.setenv("ARX_TRACKING_DRAIN_S", "3")
    trial, client, run_id = _start_and_lose_the_server(tiny_trial, tmp_path, server, 3, "it-outage-never")
    trial.join(timeout=900)
    assert trial.error is None and trial.result is not None, trial.error  # the trial completed regardless
    assert trial.result["arx_done"] and trial.result["arx_tracking_pending"] > 0
    assert list((tmp_path / "ray").rglob(PENDING))
    server.start()
    assert _steps(client, run_id) == [0]  # what MLflow had when the server went away
    code, out, err = run_cli(["sync", "--storage", str(tmp_path / "ray")])
    assert code == 0, (out, err)
    assert _steps(client, run_id) == [0, 1, 2]
    run = client.get_run(run_id)
    assert run.data.metrics["acc/top1"] == pytest.approx(trial.result["acc/top1"])
    assert run.data.tags["arx.status"] == "completed" and run.info.status == "FINISHED"
    assert "metrics.json" in [a.path for a in client.list_artifacts(run_id)]
    assert not list((tmp_path / "ray").rglob(PENDING))
