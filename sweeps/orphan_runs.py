"""MLflow trial runs of a killed driver's unsaved trials (issue #16).

Tune saves its experiment state every few seconds. A trial the driver started after the last save has no Tune trial
after a driver SIGKILL: ``--resume`` asks the searcher anew and runs the point under another trial id (the orphaned
Optuna ask is told FAIL, ``sweeps/launch.py``). Its MLflow run, created when the trial started, would stay RUNNING
forever. After ``fit()`` every run of the sweep still ``running`` whose trial id Tune does not know is such an
orphan: tagged ``arx.orphan`` (``arx.status=orphan``) and ended KILLED, so it never counts as a trial of the sweep.
"""
from __future__ import annotations

from trainables.tracking import ORPHAN_TAG

ORPHAN_REASON = "started by a sweep driver that was killed before Tune saved its trial; --resume ran it anew"


def close_orphan_runs(uri: str, parent_run_id: str, trial_ids) -> int:
    """Mark the parent's still-running child runs whose ``arx.trial_id`` is not in ``trial_ids``; returns how many."""
    from mlflow.tracking import MlflowClient

    from trainables.tracking import PARENT_TAG, STATUS_TAG, TRIAL_ID_TAG

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_run(parent_run_id).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{STATUS_TAG}` = 'running'"
    known = set(trial_ids)
    orphans = [r for r in client.search_runs([exp_id], query, max_results=10000)
               if r.data.tags.get(TRIAL_ID_TAG) not in known]
    for run in orphans:
        client.set_tag(run.info.run_id, ORPHAN_TAG, ORPHAN_REASON)
        client.set_tag(run.info.run_id, STATUS_TAG, "orphan")
        client.set_terminated(run.info.run_id, "KILLED")
    return len(orphans)


def grid_trial_ids(grid) -> list[str]:
    """The trial ids of a Tune ``ResultGrid`` (trial directories are ``trial_<id>``, ``sweeps/launch.py``)."""
    from pathlib import Path

    return [Path(res.path).name.removeprefix("trial_") for res in grid if getattr(res, "path", None)]
