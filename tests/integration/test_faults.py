"""Faults on the real stack (issue #21): a Ray Train worker SIGKILLed mid-epoch, user errors raised inside
workers (not retried), unreadable image files, a checkpoint holding code, the sweep's exit status, and two
sweeps on one results directory. Real local Ray, MLflow (sqlite) and Optuna; states are awaited, never slept."""
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from trainables.config import TrialConfig
from trainables.loop import STATE_FILE
from trainables.trainable import TrackingInfo, TrialFailed, fit_trial

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_real_loaders import write_pets  # noqa: E402
from test_spec_fuzz import run_cli  # noqa: E402


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (value := predicate()):
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---- process tree (the test's own local Ray cluster: its Train workers are our descendants) -------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def train_worker_pids() -> list[int]:
    """Live Ray Train worker processes started by this test process's Ray cluster."""
    return descendant_pids("ray::RayTrainWorker")


def descendant_pids(title: str) -> list[int]:
    """Live processes of this test process's Ray cluster whose command line starts with ``title``."""
    tree, todo, found = _children(), [os.getpid()], []
    while todo:
        for child in tree.get(todo.pop(), []):
            todo.append(child)
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title):
                found.append(child)
    return found


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("checkpoint_*") if (p / STATE_FILE).exists())


def registered_checkpoints(run_dir: Path) -> list[str]:
    """Checkpoints Ray Train's controller has registered (a restart resumes from the latest of these; one
    uploaded but not yet registered when the worker dies is not used)."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return []
    return [c["checkpoint_dir_name"] for c in snapshot.get("checkpoint_results", [])]


class KillAfterFirstCheckpoint(threading.Thread):
    """SIGKILL the trial's Train worker as soon as its first checkpoint (epoch 0) is registered: mid-epoch 1."""

    def __init__(self, run_dir: Path):
        super().__init__(daemon=True)
        self.run_dir, self.killed, self.checkpoints_at_kill, self.error = run_dir, None, None, None
        self.earlier = set(train_worker_pids())  # workers of an earlier run that may still be exiting

    def run(self):
        try:
            pid = wait_for(lambda: (p := set(train_worker_pids()) - self.earlier) and min(p), 300, "a Train worker", 0.2)
            wait_for(lambda: registered_checkpoints(self.run_dir), 300, "the first registered checkpoint", 0.02)
            os.kill(pid, signal.SIGKILL)
            self.checkpoints_at_kill = len(_checkpoints(self.run_dir))
            self.killed = pid
        except Exception as e:  # reported by the test
            self.error = e


def _kill_cfg(tiny_trial) -> TrialConfig:
    d = copy.deepcopy(tiny_trial)
    d["dataset"] |= {"train_size": 1024, "params": {"n_train": 1024, "n_test": 64}}
    d["optim"] = {"epochs": 4, "batch_size": 16, "lr": 2e-3, "optimizer": "adam", "schedule": "cosine"}
    return TrialConfig.parse(d)


def test_worker_sigkill_mid_epoch_resumes_from_checkpoint_with_the_same_result(ray_cluster, tiny_trial, tmp_path):
    """Preemption of the Train worker: Ray Train restarts the worker group from the last checkpoint (epoch 0),
    the trial completes, every epoch is logged exactly once, and the final metrics equal an uninterrupted run."""
    cfg = _kill_cfg(tiny_trial)
    straight = fit_trial(cfg, "straight", tmp_path / "ray", None, max_failures=2)
    killer = KillAfterFirstCheckpoint(tmp_path / "ray" / "killed")
    killer.start()
    info = TrackingInfo(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="it-kill-worker", trial_id="k1")
    killed = fit_trial(cfg, "killed", tmp_path / "ray", info, max_failures=2)
    killer.join(timeout=10)
    assert killer.error is None and killer.killed, killer.error
    assert killer.checkpoints_at_kill == 1  # killed after epoch 0's checkpoint, before epoch 1's
    assert killer.killed not in train_worker_pids()
    client = mlflow.MlflowClient(info.uri)
    run_id = killed["mlflow_run_id"]
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == [0, 1, 2, 3], steps  # epoch 0 not re-run: resumed from its checkpoint
    assert client.get_run(run_id).data.tags["arx.status"] == "completed"
    for key in ("acc/top1", "acc/top5", "train/loss", "train/images", "epoch"):
        assert killed[key] == straight[key], (key, killed[key], straight[key])
    a = torch.load(_checkpoints(tmp_path / "ray" / "straight")[-1] / STATE_FILE, weights_only=True)
    b = torch.load(_checkpoints(tmp_path / "ray" / "killed")[-1] / STATE_FILE, weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(b["model"][k], v), k


def _pets_cfg(root: Path, **dataset) -> TrialConfig:
    return TrialConfig.parse({
        "name": "pets-faults", "dataset": {"name": "pets", "root": str(root), "image_size": 32, **dataset},
        "model": {"backbone": "smallcnn"}, "optim": {"epochs": 1, "batch_size": 4},
        "evaluation": {"groups": ["accuracy"], "num_images": 2}, "resources": {"num_workers": 1}})


def _truncated_pets(tmp_path: Path) -> tuple[Path, Path]:
    root = write_pets(tmp_path / "pets")
    bad = root / "images" / "beagle_1.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return root, bad


def test_ddp_run_resumes_from_a_checkpoint_persisted_but_never_registered(ray_cluster, tmp_path):
    """A Ray Train worker persists its checkpoint, then the controller registers it at its next poll: rank 0 dying
    in between (here: right after ``report`` returns) restarted the run from the checkpoint before. With
    ``TrainSession`` rank 0 finds the persisted one and every rank resumes from it (2 workers: the decision is
    broadcast)."""
    import tempfile

    import ray.train
    from ray.train.torch import TorchTrainer

    attempts = tmp_path / "attempts.txt"

    def persist_then_die(config):  # nested: pickled by value for the workers
        from trainables.session import TrainSession

        session = TrainSession()
        ckpt = session.get_checkpoint()
        if ckpt is None:
            if session.rank == 0:
                with attempts.open("a") as f:
                    f.write("fresh\n")
            with tempfile.TemporaryDirectory() as d:
                if session.rank == 0:
                    torch.save({"epoch": 0}, os.path.join(d, STATE_FILE))
                session.report({"epoch": 0}, checkpoint_dir=d if session.rank == 0 else None)
            if session.rank == 0:
                os._exit(1)  # before the controller's next poll registers the checkpoint
            time.sleep(120)  # rank 1: torn down with the group
        with ckpt.as_directory() as d:
            epoch = torch.load(os.path.join(d, STATE_FILE), weights_only=True)["epoch"]
        if session.rank == 0:
            with attempts.open("a") as f:
                f.write(f"resumed {epoch}\n")

    trainer = TorchTrainer(persist_then_die, scaling_config=ray.train.ScalingConfig(num_workers=2),
                           run_config=ray.train.RunConfig(name="race", storage_path=str(tmp_path),
                                                          failure_config=ray.train.FailureConfig(max_failures=1)))
    result = trainer.fit()
    assert result.error is None
    assert attempts.read_text().splitlines() == ["fresh", "resumed 0"]  # not a second fresh start


def test_dataset_error_in_a_worker_fails_at_once_without_retry(ray_cluster, tmp_path):
    """A truncated image: the worker's DatasetError fails the trial on the first attempt (max_failures=3
    would allow 3 retries), with the one-line reason naming the file in the exception and on the MLflow run."""
    root, bad = _truncated_pets(tmp_path)
    info = TrackingInfo(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="it-user-error", trial_id="u1")
    with pytest.raises(TrialFailed) as e:
        fit_trial(_pets_cfg(root), "user-error", tmp_path / "ray", info, max_failures=3)
    reason = str(e.value)
    assert reason.startswith("DatasetError: pets: cannot read image ") and str(bad) in reason, reason
    assert "\n" not in reason and "truncated" in reason, reason
    run = mlflow.MlflowClient(info.uri).search_runs(
        [mlflow.MlflowClient(info.uri).get_experiment_by_name("it-user-error").experiment_id])[0]
    assert run.data.tags["arx.status"] == "failed" and run.info.status == "FAILED"
    assert run.data.tags["arx.failure_reason"] == reason
    wait_for(lambda: attempts(str(bad)), 30, "the worker's error in its log")
    assert attempts(str(bad)) == 1  # one attempt, no restart of the worker group


def attempts(marker: str) -> int:
    """How many Train attempts failed with an error whose text holds ``marker`` (a unique tmp path): Ray
    prints "Error in training function" with the traceback once per failed attempt, in the worker's log."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    n = 0
    for path in logs.glob("worker-*.err"):
        text = path.read_text(errors="replace")
        n += sum(marker in block for block in text.split("Error in training function")[1:])
    return n


def test_skip_corrupt_trains_without_the_file_and_tags_the_count(ray_cluster, tmp_path):
    root, _ = _truncated_pets(tmp_path)
    info = TrackingInfo(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="it-skip", trial_id="s1")
    out = fit_trial(_pets_cfg(root, skip_corrupt=True), "skip", tmp_path / "ray", info, max_failures=0)
    assert out["train/images"] == 1  # 2 training images, 1 unreadable
    tags = mlflow.MlflowClient(info.uri).get_run(out["mlflow_run_id"]).data.tags
    assert tags["arx.dataset.skipped_corrupt"] == "1" and tags["arx.status"] == "completed"


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_checkpoint_holding_code_is_refused_not_run_not_retried(ray_cluster, tiny_trial, tmp_path):
    """A trial's latest checkpoint on storage is replaced by one holding a pickled callable; restarting the
    trial refuses it with a clear one-line reason at once, and the callable never runs."""
    d = copy.deepcopy(tiny_trial)
    d["optim"] = d["optim"] | {"epochs": 1}
    fit_trial(TrialConfig.parse(d), "poisoned", tmp_path / "ray", None)
    ckpt = _checkpoints(tmp_path / "ray" / "poisoned")[-1] / STATE_FILE
    state = torch.load(ckpt, weights_only=True)
    marker = tmp_path / "pwned"
    state["regime"] = {"payload": Payload(marker)}
    torch.save(state, ckpt)
    d["optim"] = d["optim"] | {"epochs": 2}  # one more epoch: the run resumes from that checkpoint
    with pytest.raises(TrialFailed) as e:
        fit_trial(TrialConfig.parse(d), "poisoned", tmp_path / "ray", None, max_failures=3)
    reason = str(e.value)
    assert reason.startswith("CheckpointError: checkpoint ") and "refused to load" in reason and "exec" in reason, reason
    assert not marker.exists()
    wait_for(lambda: attempts(str(ckpt.parent)), 30, "the worker's error in its log")
    assert attempts(str(ckpt.parent)) == 1


# ---- the sweep: exit status and one writer per results directory ---------------------------------------
def _sweep_yaml(tmp_path: Path, name: str, base: dict, num_samples: int = 2) -> Path:
    spec = {"name": name, "base": base, "regimes": {"standard": {}},
            "objectives": [{"key": "acc/top1", "direction": "max"}], "sampler": {"name": "random", "seed": 0},
            "num_samples": num_samples, "max_concurrent": 1, "resources": {"num_workers": 1}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_exits_1_when_every_trial_failed_and_names_them(ray_cluster, tmp_path):
    root, bad = _truncated_pets(tmp_path)
    base = {"dataset": {"name": "pets", "root": str(root), "image_size": 32}, "model": {"backbone": "smallcnn"},
            "optim": {"epochs": 1, "batch_size": 4}, "evaluation": {"groups": ["accuracy"], "num_images": 2}}
    path = _sweep_yaml(tmp_path, "it-exit", base)
    code, out, err = run_cli(["sweep", str(path), "--results", str(tmp_path / "res")])
    assert code == 1, (code, out[-3000:], err[-3000:])
    assert "failed trials" in out and "cannot read image" in out, out[-3000:]
    verdict = [line for line in err.splitlines() if line.startswith("arx: ")]  # (Ray's worker logs go there too)
    assert len(verdict) == 1 and verdict[0].startswith("arx: 2 of 2 trials failed: "), err[-3000:]


def test_second_sweep_on_the_same_results_dir_is_refused(tmp_path):
    """Two real `arx sweep` processes, same sweep, same results directory: the second exits 2 at once with
    the first's pid; once the first is gone (SIGKILL) the lock is free again."""
    base = {"dataset": {"name": "shapes", "image_size": 32, "train_size": 64, "test_size": 32},
            "model": {"backbone": "smallcnn"}, "optim": {"epochs": 1, "batch_size": 32},
            "evaluation": {"groups": ["accuracy"], "num_images": 16}}
    path = _sweep_yaml(tmp_path, "it-lock", base, num_samples=1)
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", str(path), "--results", str(results)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        lock = results / ".locks" / "it-lock.lock"
        wait_for(lambda: lock.exists() and f'"pid": {first.pid}' in lock.read_text(), 120, "the first sweep's lock")
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, (second.returncode, second.stderr[-2000:])
        assert "sweep 'it-lock' is already running" in lines[0] and f"pid {first.pid}" in lines[0], lines[0]
        assert first.poll() is None  # the first sweep was not disturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    from sweeps.resultsdir import SweepLock

    with SweepLock(results, "it-lock"):  # released by the kernel when the holder died
        pass
