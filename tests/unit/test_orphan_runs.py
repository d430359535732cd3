"""sweeps/orphan_runs.py on a real MLflow store (sqlite): only running child runs unknown to Tune become orphans."""
from mlflow.tracking import MlflowClient

from sweeps.orphan_runs import close_orphan_runs
from trainables.tracking import ORPHAN_TAG


def test_running_child_runs_without_a_tune_trial_are_marked_orphan_and_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("s")
    parent = client.create_run(exp, tags={"arx.role": "sweep"}).info.run_id
    other_parent = client.create_run(exp, tags={"arx.role": "sweep"}).info.run_id

    def child(tid, status, under=parent):
        return client.create_run(exp, tags={"arx.role": "trial", "arx.trial_id": tid, "arx.status": status,
                                            "mlflow.parentRunId": under}).info.run_id

    known_running, done, orphan = child("a", "running"), child("b", "completed"), child("x", "running")
    unknown_done, elsewhere = child("y", "completed"), child("z", "running", other_parent)
    assert close_orphan_runs(uri, parent, ["a", "b"]) == 1
    run = client.get_run(orphan)
    assert run.data.tags["arx.status"] == "orphan" and ORPHAN_TAG in run.data.tags and run.info.status == "KILLED"
    for rid in (known_running, done, unknown_done, elsewhere):  # a known trial, a finished run, another sweep
        assert ORPHAN_TAG not in client.get_run(rid).data.tags
    assert close_orphan_runs(uri, parent, ["a", "b"]) == 0  # idempotent: an orphan is no longer running
    # the report's and the summary's trial table never counts an orphan as a trial of the sweep
    from analysis.runs import SweepRef, load_sweep_runs

    ref = SweepRef(experiment_id=exp, experiment_name="s", parent_run_id=parent, name="s")
    assert sorted(load_sweep_runs(uri, ref)["run_id"]) == sorted([known_running, done, unknown_done])
