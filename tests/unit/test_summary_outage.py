"""The end-of-sweep summary when MLflow missed writes (#21.2): trials whose writes wait in their outboxes are
listed as incomplete in MLflow, and a tracking server that is down at the end costs neither the summary nor
the sweep (the parent run is left open with one line saying how it gets closed)."""
from __future__ import annotations

import socket

import mlflow
from mlflow.tracking import MlflowClient
from ray.tune import Result


def _result(tid: str, regime: str, acc: float, pending: int, tmp_path) -> Result:
    metrics = {"trial_id": tid, "arx_done": True, "acc/top1": acc, "robust/pgd": acc / 2, "explain/box_iou": 0.3,
               "arx_tracking_pending": pending, "config": {"trial": {"regime": {"name": regime, "params": {}}}}}
    return Result(metrics=metrics, checkpoint=None, error=None, path=str(tmp_path / f"trial_{tid}"),
                  metrics_dataframe=None)


def _spec():
    from sweeps.spec import load_spec

    return load_spec(None, ["early_stopping=null"])


def _grid(tmp_path):
    return [_result("t1", "standard", 0.9, 0, tmp_path), _result("t2", "standard", 0.8, 7, tmp_path)]


def _paths(tmp_path, uri):
    return {"tracking": uri, "storage": str(tmp_path / "ray"), "rungs": str(tmp_path / "rungs")}


def test_summary_lists_runs_incomplete_in_mlflow_and_closes_the_parent(tmp_path):
    from sweeps.console import console
    from sweeps.summary import summarize

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    parent = client.create_run(client.create_experiment("s")).info.run_id
    with console.capture() as cap:
        out = summarize(_spec(), _grid(tmp_path), _paths(tmp_path, uri), parent, "s")
    text = cap.get()
    assert "incomplete in MLflow" in text
    block = text.split("incomplete in MLflow", 1)[1].split("Pareto set", 1)[0]
    assert "t2" in block and "7" in block and "t1" not in block
    assert [r["status"] for r in out["rows"]] == ["completed", "completed"]
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.metrics["sweep/trials_completed"] == 2


def test_tracking_server_down_at_the_end_costs_neither_summary_nor_sweep(tmp_path):
    from sweeps.console import console
    from sweeps.summary import summarize

    with socket.socket() as s:           # a port nothing listens on: the server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with console.capture() as cap:
        out = summarize(_spec(), _grid(tmp_path), _paths(tmp_path, f"http://127.0.0.1:{port}"), "0" * 32, "s")
    text = cap.get()
    assert "Pareto set" in text and len(out["rows"]) == 2
    assert "MLflow unreachable at the end of the sweep" in text and "--resume" in text
    assert "Traceback" not in text
