"""The single-worker trial in the Tune trial process (issue #16): no Ray Train controller, no worker group.

A sweep trial with ``num_workers == 1`` (and ``ARX_TRIAL_PATH`` not ``train``) runs the per-worker loop
(``trainables/loop.py``) right here through ``TuneSession``: the same loop, the same checkpoint every epoch, the same
MLflow run, the same final metrics as through Ray Train. The Tune trial holds the worker's resources itself
(``trial_resources``). Retries move to Tune: a failure that is not a user mistake raises, and Tune restarts the trial
from its last checkpoint (``retries.worker`` is added to the Tuner's ``FailureConfig``); a user error or a NaN loss
is reported as ``arx_failed`` first, and ``sweeps/retries.py`` makes such a failure final.
"""
from __future__ import annotations

from pathlib import Path

from trainables.timing import stamp


def trial_resources(config: dict, driver: dict):
    """The Tune trial's placement group (``tune.with_resources``). A Ray Train trial's driver holds ``driver`` (a
    ``trial_slot``: the cluster recipes advertise it on the CPU-less head only, so drivers never take a worker's
    CPU). An in-process trial *is* its single worker: it holds exactly the CPU/GPU that worker would have held and
    no ``trial_slot``, so it is placed on a worker node like the Train worker was (a GPU cluster still gives it a
    GPU; with a slot in the same bundle it could only be placed on a node that has both, i.e. nowhere)."""
    from ray.tune import PlacementGroupFactory

    from trainables.config import TrialConfig

    if config.get("trial_path") != "process":
        return PlacementGroupFactory([dict(driver)])
    res = TrialConfig.parse(config["trial"]).resources
    bundle = {"CPU": res.cpus_per_worker} | ({"GPU": res.gpus_per_worker} if res.use_gpu else {})
    return PlacementGroupFactory([bundle])


def run_in_process(cfg, run_name: str, storage_path: str, info, stamps: dict) -> None:
    """One trial through ``TuneSession``; the loop's reports (each epoch with its checkpoint, the final metrics) go
    to Tune as they happen. Raises ``TrialFailed`` with the reason on a failure."""
    from trainables.data._cache import cache_dir
    from trainables.entry import train_fn_per_worker
    from trainables.failures import DETERMINISTIC, one_line
    from trainables.session import TuneSession
    from trainables.tracking import ensure_run
    from trainables.trainable import complete_trial, fail_trial, loop_tracking, outbox_dir, root_cause

    run_id = ensure_run(cfg, info)
    reopen_run(info.uri, run_id)
    Path(storage_path, run_name).mkdir(parents=True, exist_ok=True)  # timing.json and the outbox live here
    outbox = outbox_dir(storage_path, run_name)
    tracking = loop_tracking(info, run_id, outbox)
    session = TuneSession()
    stamp(stamps, "trainer_start")
    try:
        train_fn_per_worker({"trial": cfg.to_dict(), "tracking": tracking, "data_cache": cache_dir()}, session)
    except DETERMINISTIC as e:  # a user error: final (reported first, so that Tune does not retry it)
        reason = one_line(e)
        session.report({"arx_failed": reason})
        fail_trial(info, run_id, outbox, reason)
    except Exception as e:  # anything else: Tune retries the trial from its last checkpoint (retries.worker)
        reason = root_cause(e)
        fail_trial(info, run_id, outbox, reason, raise_=False)
        raise
    stamp(stamps, "fit_end")
    complete_trial(info, run_id, outbox, session.last, stamps, storage_path, run_name)


def reopen_run(uri: str, run_id: str) -> None:
    """A trial Tune retries finds its run closed as failed by the attempt before: mark it running again."""
    from mlflow.tracking import MlflowClient

    from trainables.tracking import REASON_TAG, STATUS_TAG

    client = MlflowClient(tracking_uri=uri)
    tags = client.get_run(run_id).data.tags
    if tags.get(STATUS_TAG) == "failed":
        client.set_tag(run_id, STATUS_TAG, "running")
        if REASON_TAG in tags:
            client.delete_tag(run_id, REASON_TAG)
        client.update_run(run_id, status="RUNNING")
