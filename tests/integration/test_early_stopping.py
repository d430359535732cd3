"""Multi-objective early stopping on the real stack (issue #15): Ray Tune + arx's successive-halving scheduler +
OptunaSearch (RDB study) + MLflow, tiny data (smallcnn, 32 px, 96 training images, accuracy-only objectives)."""
import json
import time

import mlflow
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis.report import analyse, render_html
from analysis.runs import load_sweep_runs, resolve_sweep
from sweeps.launch import run_sweep
from test_sweep import without_orphans  # noqa: E402 (tests/integration is on sys.path under pytest)

pytestmark = pytest.mark.integration


def early_spec(tmp_path, name, num_samples=6, extra=None):
    spec = {
        "name": name,
        "base": {
            "dataset": {"name": "shapes", "image_size": 32, "train_size": 96, "test_size": 48},
            "model": {"backbone": "smallcnn"},
            "optim": {"epochs": 3, "batch_size": 32, "lr": 3e-3},
            "evaluation": {"groups": ["accuracy"], "num_images": 16},
        },
        "search": {"optim.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
        "regimes": {"standard": {}},
        "objectives": [{"key": "acc/top1", "direction": "max"}, {"key": "acc/top5", "direction": "max"}],
        "sampler": {"name": "random", "seed": 0},
        "num_samples": num_samples,
        "max_concurrent": 2,
        "resources": {"num_workers": 1},
        "early_stopping": {"reduction_factor": 2, "rungs": [1, 2], "images": 32},
        **(extra or {}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.timeout(3600)
def test_early_stopped_sweep_tells_the_truth_everywhere(ray_cluster, tmp_path):
    results = tmp_path / "res"
    out = run_sweep(early_spec(tmp_path, "it-es"), results)
    table = json.loads((results / "rungs" / "it-es.json").read_text())
    pruned = table["pruned"]
    assert pruned, table  # with eta 2 the second trial at a rung stops unless it ranks first
    assert {str(p["rung"]) for p in pruned.values()} <= {"1", "2"}
    assert len(table["rungs"]["1"]) == 6  # every trial reached the first rung and was recorded once

    rows = {r["trial"]: r for r in out["rows"]}
    assert {t for t, r in rows.items() if r["status"] == "pruned"} == set(pruned)
    assert all(r["status"] in ("completed", "pruned") for r in rows.values()), rows
    assert not set(pruned) & {r["trial"] for r in out["pareto"]}

    study = optuna.load_study(study_name="it-es", storage=f"sqlite:///{(results / 'optuna.db').resolve()}")
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    n_pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert n_pruned == len(pruned)
    assert all(t.values is not None and len(t.values) == 2 for t in study.trials
               if t.state == optuna.trial.TrialState.COMPLETE)
    assert all(t.user_attrs.get("arx.rung") in (1, 2) for t in study.trials
               if t.state == optuna.trial.TrialState.PRUNED)

    uri = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["it-es"])
    trials = runs[runs["tags.arx.role"] == "trial"].set_index("tags.arx.trial_id")
    for tid, p in pruned.items():
        assert trials.loc[tid, "tags.arx.status"] == "pruned" and trials.loc[tid, "status"] == "KILLED"
        assert trials.loc[tid, "tags.arx.rung"] == str(p["rung"])
    done = trials[trials["tags.arx.status"] == "completed"]
    assert len(done) == 6 - len(pruned) and done["metrics.acc/top1"].notna().all()
    # rung values are logged with step = epoch: each completed trial has a curve over both rungs
    client = MlflowClient(tracking_uri=uri)
    for run_id in done["run_id"]:
        assert [m.step for m in client.get_metric_history(run_id, "rung/acc/top1")] == [0, 1]

    ref = resolve_sweep(uri, "it-es")
    a = analyse(load_sweep_runs(uri, ref), ref.objectives)
    assert set(a.pruned["trial_id"]) == set(pruned) and not len(a.failed)
    assert not set(a.front["trial_id"]) & set(pruned)
    html = render_html(a, {"sweep": "it-es"})
    assert "Pruned trials" in html and f"<b>{len(pruned)}</b> pruned" in html
    from sweeps.orphans import actor_groups

    assert not actor_groups(dead_only=False)  # the stopped trials' Train groups were released


def _replayed_decisions_match(table: dict, eta: int, modes) -> bool:
    """Every recorded decision equals ``keep`` on the results recorded at that rung up to it (``seq`` order)."""
    from sweeps.mo_rank import Record, keep

    for entries in table["rungs"].values():
        for tid, e in entries.items():
            seen = [Record(t, tuple(o["values"]), o["violation"]) for t, o in entries.items() if o["seq"] <= e["seq"]]
            if keep(seen, tid, eta, modes) != e["keep"]:
                return False
    return True


@pytest.mark.timeout(3600)
def test_sigkill_and_resume_with_early_stopping(ray_cluster, tmp_path):
    """SIGKILL the driver after 2 trials ended (completed or pruned); --resume: nothing runs twice, no pruned trial
    comes back, the rung table written before the kill is intact, and every decision is the one the recorded
    results dictate."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    from test_sweep import _IDLE_AGENTS, _group_alive, _wait_for

    path = early_spec(tmp_path, "it-es-kill", num_samples=4)
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", str(path), "--results", str(results)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    first = tmp_path / "first.log"
    with open(first, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(lambda: "[2/4]" in first.read_text() or proc.poll() is not None, "2 ended trials", 1500)
        assert "[2/4]" in first.read_text(), first.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_for(lambda: all(c.startswith(_IDLE_AGENTS) for c in _group_alive(proc.pid)),
                  "the killed sweep's Ray processes to exit", 300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    before = json.loads((results / "rungs" / "it-es-kill.json").read_text())
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=1800)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = json.loads((results / "rungs" / "it-es-kill.json").read_text())
    for rung, entries in before["rungs"].items():  # intact: nothing recorded before the kill changed
        for tid, e in entries.items():
            assert after["rungs"][rung][tid] == e
    assert {t: p for t, p in after["pruned"].items() if t in before["pruned"]} == before["pruned"]
    assert _replayed_decisions_match(after, 2, ["max", "max"])
    assert after["pruned"], after

    uri = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["it-es-kill"])
    trials = without_orphans(runs[runs["tags.arx.role"] == "trial"])  # a killed driver's unsaved trial's run
    assert trials["tags.arx.trial_id"].is_unique and len(trials) == 4  # nothing ran twice
    by_id = trials.set_index("tags.arx.trial_id")
    for tid in after["pruned"]:  # not resurrected: still pruned, never completed
        assert by_id.loc[tid, "tags.arx.status"] == "pruned"
        assert "metrics.acc/top1" not in by_id.columns or by_id["metrics.acc/top1"].isna()[tid]
    assert set(by_id.index[by_id["tags.arx.status"] == "completed"]) == set(by_id.index) - set(after["pruned"])
    study = optuna.load_study(study_name="it-es-kill", storage=f"sqlite:///{(results / 'optuna.db').resolve()}")
    # an ask the killed driver made before Tune saved its trial is told FAIL and marked arx.orphan at the end
    # (sweeps/launch.py); every other Optuna trial is one of the 4 Tune trials, COMPLETE or PRUNED
    ran = [t for t in study.trials if "arx.orphan" not in t.user_attrs]
    assert all(t.state.name == "FAIL" for t in study.trials if "arx.orphan" in t.user_attrs)
    states = {t.state.name for t in ran}
    assert states <= {"COMPLETE", "PRUNED"} and len(ran) == 4, states
    assert sum(t.state.name == "PRUNED" for t in ran) == len(after["pruned"])


def test_placement_groups_of_a_dead_creator_actor_are_released(ray_cluster):
    """What a STOPped trial leaves behind: a placement group made by an actor (the Train controller) that died."""
    import ray
    from ray.util.placement_group import placement_group

    from sweeps.orphans import orphaned_groups, release_orphaned_groups

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self):
            pg = placement_group([{"CPU": 1}])
            ray.get(pg.ready())
            return pg.id.hex()

    own = placement_group([{"CPU": 0.01}])  # made by the driver: never an orphan
    maker = Maker.remote()
    pg_id = ray.get(maker.make.remote())
    assert pg_id not in orphaned_groups()  # its creator is alive
    ray.kill(maker)
    deadline = time.monotonic() + 120
    while pg_id not in orphaned_groups():  # the GCS marks the creator dead (a state, polled)
        assert time.monotonic() < deadline, "creator never marked dead"
        time.sleep(0.2)
    assert own.id.hex() not in orphaned_groups()
    assert release_orphaned_groups() >= 1 and pg_id not in orphaned_groups()
    ray.util.remove_placement_group(own)
