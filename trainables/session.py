"""What the per-worker loop needs from its runtime: rank, world size, device, the checkpoint to resume from, and a
``report(metrics, checkpoint_dir)`` (issue #16). Two implementations:

- ``TrainSession``: a Ray Train worker (``ray.train.report`` / ``get_checkpoint`` / ``get_context``), used by
  multi-worker (DDP) trials, by ``arx train`` and by every trial with ``ARX_TRIAL_PATH=train``;
- ``TuneSession``: the Tune trial process itself (``ray.tune.report`` / ``get_checkpoint`` with
  ``ray.tune.Checkpoint``), used by single-worker sweep trials: no Train controller, no worker group.

``trial_path`` decides which one a sweep's trials use; this module imports nothing heavy at import time.
"""
from __future__ import annotations

import os

PATHS = ("auto", "train", "process")


def trial_path(num_workers: int, env: str | None = None) -> str:
    """``process`` (in the Tune trial process) for 1-worker trials, ``train`` (Ray Train) otherwise;
    ``ARX_TRIAL_PATH=train`` forces Ray Train for every trial (``auto``, the default, decides by workers)."""
    choice = (env if env is not None else os.environ.get("ARX_TRIAL_PATH", "auto")).strip().lower() or "auto"
    if choice not in PATHS:
        from trainables.errors import ConfigError

        raise ConfigError(f"ARX_TRIAL_PATH={choice!r}: expected one of {', '.join(PATHS)}")
    if choice == "train" or num_workers != 1:
        return "train"
    return "process"


class TrainSession:
    """A Ray Train worker's view of its run."""

    unregistered = False  # set by get_checkpoint: resuming from a checkpoint Ray never registered

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def get_checkpoint(self):
        """Ray Train's checkpoint for this run, or a newer complete one rank 0 persisted that the controller never
        registered (``newest_persisted``); rank 0 decides and every rank resumes from the same one."""
        import ray.train

        from trainables.compat import train_run_storage_dir

        ckpt = ray.train.get_checkpoint()
        newer = None
        if self.rank == 0 and (run_dir := train_run_storage_dir()):
            newer = newest_persisted(run_dir, ckpt.path if ckpt is not None else None)
        if self.world > 1:
            from ray.train.collective import broadcast_from_rank_zero

            newer = broadcast_from_rank_zero(newer)
        self.unregistered = bool(newer)
        return ray.train.Checkpoint.from_directory(newer) if newer else ckpt

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    def prepare_model(self, model):
        import ray.train.torch

        return ray.train.torch.prepare_model(model, move_to_device=False) if self.world > 1 else model


class TuneSession:
    """The Tune trial process as the only worker (rank 0 of 1). Keeps the last metrics it reported, so the trial
    driver in the same process knows how the loop ended."""

    rank, world = 0, 1
    unregistered = False  # set by get_checkpoint, as in TrainSession

    def __init__(self):
        self.last: dict = {}

    def device(self):
        """The GPU Ray gave this trial (``CUDA_VISIBLE_DEVICES`` holds only it), else the CPU."""
        import ray
        import torch

        return torch.device("cuda", 0) if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")

    def get_checkpoint(self):
        """Tune's checkpoint for this trial, or a newer complete one this trial persisted that Tune never
        registered (``newest_persisted``)."""
        import ray.tune

        from trainables.compat import tune_trial_storage_dir

        ckpt = ray.tune.get_checkpoint()
        trial_dir = tune_trial_storage_dir()
        newer = newest_persisted(trial_dir, ckpt.path if ckpt is not None else None) if trial_dir else None
        self.unregistered = bool(newer)
        return ray.tune.Checkpoint.from_directory(newer) if newer else ckpt

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        import ray.tune

        self.last = dict(metrics)
        ckpt = ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.tune.report(metrics, checkpoint=ckpt)

    def prepare_model(self, model):
        return model


def newest_persisted(trial_dir: str, registered: str | None) -> str | None:
    """A checkpoint of this trial newer than ``registered`` (Tune's, or None), else None.

    A Tune function trainable persists a reported checkpoint into its trial directory (``checkpoint_NNNNNN``, Tune's
    storage layout) *before* the trial driver asks the trial for it (a separate ``save`` call), and a Ray Train
    worker persists one into the run directory before the controller's next poll registers it; a trial killed in
    between is restarted from the checkpoint before, and repeats an epoch it already logged to MLflow. The newest
    ``state.pt`` in the trial directory that is complete (a zip whose central directory, written last, reads)
    is where the killed attempt really was. Local storage only (``trainables/compat.py``): on ``s3://``/``gs://``
    Tune's checkpoint is used."""
    import zipfile
    from pathlib import Path

    from trainables.loop import STATE_FILE

    root = Path(trial_dir)
    if "://" in trial_dir or not root.is_dir():
        return None
    def mtime(path: Path) -> float:  # -1: gone (deleted while we look) or unreadable
        try:
            return path.stat().st_mtime
        except OSError:
            return -1.0

    floor = mtime(Path(registered) / STATE_FILE) if registered is not None else -1.0
    for state in sorted(root.glob(f"checkpoint_*/{STATE_FILE}"), key=mtime, reverse=True):
        if mtime(state) <= floor:
            return None  # Ray's own checkpoint is the newest complete one (or nothing newer is readable)
        try:
            with zipfile.ZipFile(state) as z:
                if any(n.endswith("data.pkl") for n in z.namelist()):
                    return str(state.parent)
        except (OSError, zipfile.BadZipFile):
            continue  # cut short by the kill: try the one before
    return None
