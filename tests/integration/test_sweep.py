"""Sweeps on the real stack: Ray Tune + OptunaSearch (multi-objective, RDB study) + nested MLflow runs."""
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
import yaml

from analysis.pareto import non_dominated
from sweeps.launch import run_sweep

pytestmark = pytest.mark.integration


def _search(uri, **kwargs):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(**kwargs)


def _spec(tmp_path, name, regimes, num_samples, workers=1, extra=None):
    spec = {
        "name": name,
        "base": {
            "dataset": {"name": "shapes", "image_size": 32, "train_size": 96, "test_size": 48},
            "model": {"backbone": "smallcnn"},
            "optim": {"epochs": 1, "batch_size": 32, "lr": 3e-3},
            "evaluation": {"groups": ["accuracy"], "num_images": 16},
        },
        "regimes": regimes,
        "objectives": [{"key": "acc/top1", "direction": "max"}, {"key": "acc/top5", "direction": "max"}],
        "sampler": {"name": "random", "seed": 0},
        "num_samples": num_samples,
        "resources": {"num_workers": workers},
        **(extra or {}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def without_orphans(children: pd.DataFrame) -> pd.DataFrame:
    """The trial runs less those of trials a killed driver started before Tune saved them (sweeps/orphan_runs.py:
    tagged arx.orphan, ended KILLED; --resume ran those points under new trial ids)."""
    if "tags.arx.orphan" not in children:
        return children
    orphans = children[children["tags.arx.orphan"].notna()]
    assert (orphans["tags.arx.status"] == "orphan").all() and (orphans["status"] == "KILLED").all()
    return children[children["tags.arx.orphan"].isna()]


def _children(uri, name):
    runs = _search(uri, experiment_names=[name])
    return runs[runs["tags.arx.role"] == "trial"], runs[runs["tags.arx.role"] == "sweep"]


def test_multiobjective_sweep_two_regimes_two_workers(ray_cluster, tmp_path):
    regimes = {"standard": {}, "fgsm_at": {"eps": {"type": "float", "low": 0.01, "high": 0.05}}}
    path = _spec(tmp_path, "it-mo", regimes, num_samples=4, workers=2)
    out = run_sweep(path, tmp_path / "res")
    uri = f"sqlite:///{(tmp_path / 'res' / 'mlflow.db').resolve()}"
    study = optuna.load_study(study_name="it-mo", storage=f"sqlite:///{(tmp_path / 'res' / 'optuna.db').resolve()}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and all(len(t.values) == 2 for t in done)
    assert {t.params.get("regime") for t in study.trials} <= {"standard", "fgsm_at"}
    children, parents = _children(uri, "it-mo")
    assert len(parents) == 1 and len(children) == 4
    assert set(children["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert children["metrics.acc/top1"].notna().all()
    # the printed Pareto set is the non-dominated set of the MLflow runs
    df = children[["tags.arx.trial_id", "metrics.acc/top1", "metrics.acc/top5"]].rename(
        columns=lambda c: c.removeprefix("metrics."))
    mask = non_dominated(df, ["acc/top1", "acc/top5"], ["max", "max"])
    expected = set(df.loc[list(mask), "tags.arx.trial_id"])
    assert {r["trial"] for r in out["pareto"]} == expected


@pytest.mark.parametrize("trial_path", ["process", "train"])
def test_failed_trial_is_tagged_and_sweep_completes(ray_cluster, tmp_path, monkeypatch, trial_path):
    """A trial whose loss becomes NaN fails with the reason in MLflow, on its first attempt (a user error is final
    on both trial paths, although the in-process path gives Tune retries.worker retries); the other completes."""
    monkeypatch.setenv("ARX_TRIAL_PATH", "auto" if trial_path == "process" else "train")
    regimes = {"standard": {}}
    extra = {"search": {"optim.lr": {"type": "categorical", "choices": [3e-3, 1e12]},
                        "optim.optimizer": {"type": "fixed", "value": "sgd"}},
             "sampler": {"name": "grid", "seed": 0}}
    path = _spec(tmp_path, "it-nan", regimes, num_samples=2, extra=extra)
    out = run_sweep(path, tmp_path / "res")
    statuses = sorted(r["status"] for r in out["rows"])
    assert statuses == ["completed", "failed"]
    uri = f"sqlite:///{(tmp_path / 'res' / 'mlflow.db').resolve()}"
    children, _ = _children(uri, "it-nan")
    failed = children[children["tags.arx.status"] == "failed"]
    assert len(failed) == 1 and "non-finite" in failed.iloc[0]["tags.arx.failure_reason"]
    study = optuna.load_study(study_name="it-nan", storage=f"sqlite:///{(tmp_path / 'res' / 'optuna.db').resolve()}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
    errors = list((tmp_path / "res" / "ray" / "it-nan").glob("trial_*/error.txt"))
    assert len(errors) == 1 and "Failure # 1 " in errors[0].read_text(), errors
    assert "Failure # 2 " not in errors[0].read_text()  # not retried
    in_train = list((tmp_path / "res" / "ray" / "train_runs").glob("*/checkpoint_*"))
    assert bool(in_train) == (trial_path == "train")


def _wait_for(predicate, what: str, deadline_s: float, poll_s: float = 1.0):
    """Wait for a state (not a duration): ``predicate()`` true, polled; the deadline is only a safety net, sized
    for a loaded 2-core machine, and its failure says which state never came."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


def _group_alive(pgid: int) -> set[str]:
    """Commands of the live (non-zombie) processes of process group ``pgid``."""
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,comm="], capture_output=True, text=True).stdout
    return {parts[2] for parts in (line.split(None, 2) for line in out.splitlines())
            if len(parts) == 3 and parts[0] == str(pgid) and not parts[1].startswith("Z")}


# Ray's agents of a killed local cluster may idle on for minutes; they hold no trial and no file of the sweep
# (``ps`` cuts command names to 15 characters: match prefixes)
_IDLE_AGENTS = ("ray::Dashboard", "ray::RuntimeEn")


@pytest.mark.timeout(3600)
def test_sigkill_and_resume_runs_nothing_twice(ray_cluster, tmp_path):
    """SIGKILL the sweep driver after 2 finished trials; --resume finishes the rest, no duplicates.

    Waits for states only (the second finished trial in the driver's output, the killed driver's Ray processes
    gone), so it holds on a loaded 2-core machine; deadlines are safety nets."""
    path = _spec(tmp_path, "it-kill", {"standard": {}}, num_samples=4,
                 extra={"max_concurrent": 1, "search": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", str(path), "--results", str(results)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    first = tmp_path / "first.log"
    with open(first, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(lambda: "[2/4]" in first.read_text() or proc.poll() is not None, "2 finished trials", 1500)
        assert "[2/4]" in first.read_text(), first.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # the killed driver's local Ray (GCS, raylet, trial workers) must be gone before the resumed sweep starts
        _wait_for(lambda: all(c.startswith(_IDLE_AGENTS) for c in _group_alive(proc.pid)),
                  "the killed sweep's Ray processes to exit", 300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # idle agents left by the killed cluster; never outlive the test
    second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=2400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    uri = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    children, parents = _children(uri, "it-kill")
    assert len(parents) == 1
    children = without_orphans(children)
    assert len(children) == 4 and children["tags.arx.trial_id"].is_unique
    assert (children["tags.arx.status"] == "completed").all()
    # no trial trained twice: every epoch of every run was logged exactly once
    client = mlflow.MlflowClient(uri)
    for run_id in children["run_id"]:
        steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
        assert sorted(steps) == [0], (run_id, steps)
    study = optuna.load_study(study_name="it-kill", storage=f"sqlite:///{(results / 'optuna.db').resolve()}")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 4
