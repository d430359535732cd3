"""trainables/session.py ``trial_path``, trainables/inprocess.py ``trial_resources``, sweeps/retries.py and its
Ray Tune attribute (sweeps/compat.py ``set_trial_max_failures``)."""
import os

import pytest
import torch
from ray.tune.experiment import Trial

from sweeps.compat import set_trial_max_failures
from sweeps.retries import UserErrorsFinal
from trainables.errors import ConfigError
from trainables.inprocess import trial_resources
from trainables.session import TuneSession, newest_persisted, trial_path

SLOT = {"trial_slot": 1}


@pytest.mark.parametrize(("workers", "env", "path"), [(1, "auto", "process"), (1, "", "process"), (2, "auto", "train"),
                                                     (1, "train", "train"), (1, " Train ", "train"), (4, "train", "train"),
                                                     (1, "process", "process"), (2, "process", "train")])
def test_trial_path_runs_one_worker_in_process_unless_forced_to_ray_train(workers, env, path):
    assert trial_path(workers, env) == path


def test_trial_path_refuses_an_unknown_choice_in_one_line():
    with pytest.raises(ConfigError, match=r"ARX_TRIAL_PATH='thread': expected one of auto, train, process"):
        trial_path(1, "thread")


def _bundles(config):
    return trial_resources(config, SLOT).bundles


def test_in_process_trial_holds_the_workers_cpu_and_gpu_and_no_slot():
    # no trial_slot: the cluster recipes put the slots on the CPU-less head, so a bundle with both a slot and a
    # worker's CPU/GPU fits no node (the two-node test caught it: every trial was crowded onto the head)
    trial = {"resources": {"num_workers": 1, "cpus_per_worker": 3, "use_gpu": True, "gpus_per_worker": 1}}
    assert _bundles({"trial": trial, "trial_path": "process"}) == [{"CPU": 3, "GPU": 1}]
    cpu_only = {"resources": {"num_workers": 1, "cpus_per_worker": 2}}
    assert _bundles({"trial": cpu_only, "trial_path": "process"}) == [{"CPU": 2}]


def test_ray_train_trial_driver_holds_only_its_slot():
    trial = {"resources": {"num_workers": 2, "cpus_per_worker": 1}}
    assert _bundles({"trial": trial, "trial_path": "train"}) == [SLOT]
    assert _bundles({"trial": trial}) == [SLOT]  # a sweep from before the in-process path (resumed)
    assert trial_resources({"trial": trial}, {"CPU": 0.01}).bundles == [{"CPU": 0.01}]


def test_a_reported_user_error_leaves_the_trial_no_tune_retry():
    trial = Trial("tune_trial", stub=True, max_failures=2)
    trial.run_metadata.num_failures = 1
    assert trial.should_recover()  # a crash would be retried (retries.worker)
    UserErrorsFinal().on_trial_result(0, [trial], trial, {"epoch": 0, "train/loss": 1.0})
    assert trial.should_recover()
    UserErrorsFinal().on_trial_result(0, [trial], trial, {"epoch": 0, "arx_failed": "ConfigError: x"})
    assert trial.max_failures == 0 and not trial.should_recover()


def test_set_trial_max_failures_sets_tunes_per_trial_budget():
    trial = Trial("tune_trial", stub=True, max_failures=3)
    set_trial_max_failures(trial, 0)
    assert trial.max_failures == 0  # the attribute Tune's should_recover() reads


def test_tune_session_is_rank_zero_of_one_and_remembers_its_last_report():
    s = TuneSession()
    assert (s.rank, s.world, s.last) == (0, 1, {})
    model = object()
    assert s.prepare_model(model) is model


def _ckpt(trial_dir, index: int, mtime: float, *, cut: bool = False) -> str:
    d = trial_dir / f"checkpoint_{index:06d}"
    d.mkdir()
    torch.save({"epoch": index, "w": torch.zeros(64)}, d / "state.pt")
    if cut:  # a copy the kill cut short: the zip's central directory (written last) is missing
        data = (d / "state.pt").read_bytes()
        (d / "state.pt").write_bytes(data[: len(data) // 2])
    os.utime(d / "state.pt", (mtime, mtime))
    return str(d)


def test_newest_persisted_finds_the_checkpoint_tune_never_registered(tmp_path):
    # Tune persists a reported checkpoint before the driver's `save` call registers it; a kill in between
    # (CI: the in-process SIGKILL test, epoch 0 logged twice) restarts the trial from the checkpoint before
    c0 = _ckpt(tmp_path, 0, 1000.0)
    assert newest_persisted(str(tmp_path), None) == c0  # Tune registered none: the persisted one
    assert newest_persisted(str(tmp_path), c0) is None  # Tune's is the newest: use Tune's
    c1 = _ckpt(tmp_path, 1, 1001.0)
    assert newest_persisted(str(tmp_path), c0) == c1
    _ckpt(tmp_path, 2, 1002.0, cut=True)  # killed mid-copy: skipped, the one before is used
    assert newest_persisted(str(tmp_path), c0) == c1
    assert newest_persisted(str(tmp_path), c1) is None
    (tmp_path / "checkpoint_000009").mkdir()  # a state.pt that vanishes while we look (a dangling link here)
    (tmp_path / "checkpoint_000009" / "state.pt").symlink_to(tmp_path / "gone.pt")
    assert newest_persisted(str(tmp_path), c0) == c1
    assert newest_persisted(str(tmp_path), None) == c1
    assert newest_persisted(str(tmp_path / "none"), None) is None
    assert newest_persisted("s3://bucket/exp/trial_1", None) is None  # remote storage: Tune's checkpoint only
