"""One trial table and one status rule (#19.4) and one MLflow schema (#19.5).

``analysis.runs.trial_status`` decides a trial's status from MLflow (tag + run status) and from Tune (error,
final result, rung table); ``results_frame`` builds the report's trial table from Tune ``Result`` objects and
``sweeps.summary.trial_rows`` reads the same table; every ``arx.*`` tag name lives in ``trainables/tracking.py``.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from ray.tune import Result

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kw, expected", [
    (dict(tag="completed", run_status="FINISHED"), "completed"),
    (dict(tag="failed", run_status="FINISHED"), "failed"),
    (dict(tag="pruned", run_status="KILLED"), "pruned"),
    (dict(tag=None, run_status="FINISHED"), "completed"),      # a run closed before arx set the tag
    (dict(tag="running", run_status="FINISHED"), "running"),   # closed without arx's final word: not completed
    (dict(tag="running", run_status="KILLED"), "failed"),
    (dict(tag="running", run_status="RUNNING"), "running"),
    (dict(error=True, done=True), "failed"),                   # Tune: the trial raised
    (dict(done=True), "completed"),
    (dict(pruned=True, ended=True), "pruned"),
    (dict(ended=True), "failed"),                              # ended without a final result
    (dict(ended=False), "running"),
])
def test_trial_status(kw, expected):
    from analysis.runs import trial_status

    assert trial_status(**kw) == expected


def _result(tmp_path, tid, regime, metrics, error=None, **params):
    cfg = {"trial": {"regime": {"name": regime, "params": params}, "seed": 1}, "tracking": {"parent_run_id": "p"}}
    return Result(metrics={"trial_id": tid, **metrics, "config": cfg}, checkpoint=None, error=error,
                  path=str(tmp_path / f"trial_{tid}"), metrics_dataframe=None)


def _grid(tmp_path):
    return [_result(tmp_path, "a", "fgsm_at", {"arx_done": True, "acc/top1": 0.9, "mlflow_run_id": "r1"}, eps=0.03),
            _result(tmp_path, "b", "standard", {"acc/top1": 0.5}, error=ValueError("Traceback\n  ...\nbad lr")),
            _result(tmp_path, "c", "standard", {"acc/top1": 0.4, "arx_failed": "NaN loss"}),
            _result(tmp_path, "d", "standard", {"rung/acc/top1": 0.2})]


def test_results_frame_is_the_report_table_with_one_status_rule(tmp_path):
    from analysis.runs import BASE_COLUMNS, results_frame

    df = results_frame(_grid(tmp_path), pruned={"d": {"rung": 1, "saved_device_seconds": 12.5}}).set_index("trial_id")
    assert set(BASE_COLUMNS) - {"trial_id"} <= set(df.columns)
    assert list(df["status"]) == ["completed", "failed", "failed", "pruned"]
    assert df.loc["b", "failure_reason"] == "bad lr" and df.loc["c", "failure_reason"] == "NaN loss"
    assert df.loc["a", "acc/top1"] == 0.9 and math.isnan(df.loc["b", "acc/top1"])   # values of completed trials only
    assert df.loc["a", "params.regime.params.eps"] == 0.03 and df.loc["a", "run_id"] == "r1"
    assert (df.loc["d", "rung"], df.loc["d", "device_seconds_saved"]) == (1, 12.5)


def test_the_summary_reads_the_same_table(tmp_path):
    from sweeps.summary import trial_rows

    rows = {r["trial"]: r for r in trial_rows(_grid(tmp_path), ["acc/top1"], ["seed"],
                                              {"d": {"rung": 1, "saved_device_seconds": 12.5}})}
    assert [r["status"] for r in rows.values()] == ["completed", "failed", "failed", "pruned"]
    assert rows["a"]["params"] == {"eps": 0.03, "seed": 1} and rows["b"]["params"] == {"seed": 1}
    assert rows["b"]["reason"] == "bad lr" and (rows["d"]["rung"], rows["d"]["saved_s"]) == (1, 12.5)
    assert rows["a"]["acc/top1"] == 0.9 and math.isnan(rows["c"]["acc/top1"])


def _arx_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{n.lineno} {n.value}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and (n.value.startswith("arx.") or "mlflow.parentRunId" in n.value)]


OPTUNA_ATTRS = {"arx.orphan", "arx.rung"}   # Optuna user attributes (sweeps/launch.py, sweeps/space.py), not tags


def test_every_mlflow_tag_name_lives_in_tracking():
    files = [p for d in ("analysis", "sweeps", "trainables") for p in (ROOT / d).rglob("*.py")]
    found = [hit for p in files if p != ROOT / "trainables" / "tracking.py" for hit in _arx_literals(p)]
    assert [h for h in found if h.split(" ", 1)[1] not in OPTUNA_ATTRS] == []
    assert _arx_literals(ROOT / "trainables" / "tracking.py")          # the check sees literals where they are


def test_parent_run_written_by_tracking_is_read_back_by_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    from analysis.runs import resolve_sweep
    from trainables.tracking import OBJECTIVES_TAG, PARETO_TRIALS_TAG, close_parent_run, open_parent_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    objs = [{"key": "acc/top1", "direction": "max"}]
    pid = open_parent_run(uri, "exp", "exp-2", objs, ["robust/pgd >= 0.1"], {"git_sha": "abc"}, "name: exp\n")
    assert open_parent_run(uri, "exp", "exp-2", objs, [], {}, "", resume=True) == pid   # --resume: the same run
    ref = resolve_sweep(uri, "exp-2")
    assert (ref.parent_run_id, ref.objectives, ref.constraints) == (pid, objs, ["robust/pgd >= 0.1"])
    client = MlflowClient(tracking_uri=uri)
    close_parent_run(client, pid, ["completed", "failed", "completed", "pruned"], ["t1", "t3"])
    run = client.get_run(pid)
    assert run.info.status == "FINISHED" and run.data.tags[PARETO_TRIALS_TAG] == "t1,t3"
    assert {k: run.data.metrics[f"sweep/trials_{k}"] for k in ("completed", "failed", "pruned")} == \
        {"completed": 2, "failed": 1, "pruned": 1}
    assert run.data.tags["arx.git_sha"] == "abc" and OBJECTIVES_TAG in run.data.tags
