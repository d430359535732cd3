"""The per-worker loop: plain PyTorch + ``prepare_model`` + ``report``, over a session (``trainables/session.py``:
a Ray Train worker, or the Tune trial process for single-worker sweep trials).

Every rank: build data (DistributedSampler shard), model (regime surgery, DDP via ``prepare_model``),
optimizer; restore the latest checkpoint; train epochs with the regime's ``loss``; all-reduce the epoch's
logs; report each epoch (rank 0 attaches the checkpoint); evaluate once at the end, sharded across ranks.
Side effects (MLflow) happen on rank 0 only. No science here: regimes, attacks and metrics live elsewhere.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import ray
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from trainables.config import TrialConfig
from trainables.data import build_dataset
from trainables.data.augment import augment_batch
from trainables.errors import CheckpointError
from trainables.failures import NonFiniteLoss  # noqa: F401 (raised here; its home is failures.py)
from trainables.evaluation import EvalContext, evaluate
from trainables.models import build_classifier, unwrap
from trainables.optim import build_optimizer, build_scheduler
from trainables.regimes import build_regime
from trainables.rungs import rung_metrics
from trainables.entry import train_log_level
from trainables.session import TrainSession
from trainables.timing import stamp
from trainables.tracking import NODE_ID_TAG, SKIPPED_CORRUPT_TAG, UNBOXED_TAG, RankZeroTracker

STATE_FILE = "state.pt"
STATE_KEYS = frozenset({"model", "optimizer", "scheduler", "scaler", "regime", "epoch"})


def build_model_and_regime(cfg: TrialConfig, num_classes: int, in_chans: int):
    model = build_classifier(cfg.model.backbone, cfg.model.num_classes or num_classes, in_chans,
                             cfg.model.pretrained, cfg.model.drop_rate)
    regime = build_regime(cfg)
    return regime.build_model(model), regime


def _loader(dataset, cfg: TrialConfig, rank: int, world: int, epoch_seed: int):
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed, drop_last=world > 1)
    sampler.set_epoch(epoch_seed)
    return DataLoader(dataset, batch_size=cfg.optim.batch_size, sampler=sampler, drop_last=False,
                      num_workers=cfg.dataset.num_workers, pin_memory=torch.cuda.is_available())


def _allreduce_mean(sums: dict[str, float], count: int, device) -> tuple[dict[str, float], int]:
    """Image-weighted means over all ranks, and the number of images all ranks processed."""
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return {k: float(t[i] / max(t[-1], 1)) for i, k in enumerate(keys)}, int(t[-1])


def train_epoch(model, regime, optimizer, loader, device, cfg: TrialConfig, scaler, epoch: int, world: int = 1,
                after_first_step=None) -> dict:
    model.train()
    use_amp = cfg.optim.amp and device.type == "cuda"
    sums: dict[str, float] = {}
    n = 0
    for step, batch in enumerate(loader):
        x = batch["image"].to(device, non_blocking=True)
        y = batch["label"].to(device, non_blocking=True)
        x = augment_batch(x, cfg, epoch, step)  # dataset.augment: training only, seeded per epoch/rank/step
        if device.type == "cuda" and cfg.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16) if use_amp else nullcontext():
            loss, logs = regime.loss(model, x, y)
        if world == 1 and not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite training loss ({float(loss)}) at epoch {epoch} step {step}")
        scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if step == 0 and after_first_step is not None:
            after_first_step()
        b = len(y)
        n += b
        sums["train/loss"] = sums.get("train/loss", 0.0) + float(loss.detach()) * b
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
    logs, total = _allreduce_mean(sums, n, device)
    if not all(math.isfinite(v) for v in logs.values()):  # the same verdict on every rank
        raise NonFiniteLoss(f"non-finite training logs at epoch {epoch}: {logs}")
    return logs | {"train/images": total}


def save_state(path: str, model, optimizer, scheduler, scaler, regime, epoch: int,
               report: dict | None = None) -> None:
    """Tensors and plain values only (``read_state`` loads with ``weights_only=True``); the RNG states
    make a restarted epoch draw what the uninterrupted run drew. ``report``: the epoch's reported metrics, sent
    again by a trial that resumes from this checkpoint before Ray registered it (``_report_again``)."""
    numbers = {k: v for k, v in (report or {}).items() if isinstance(v, (int, float))}
    torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "regime": regime.state_dict(), "epoch": epoch, "rng": _rng_state(), "report": numbers},
               os.path.join(path, STATE_FILE))


def _rng_state() -> dict:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def read_state(path: str) -> dict:
    """A training state saved by ``save_state``, unpickled with ``weights_only=True``: a checkpoint on shared
    storage can hold tensors and plain values, never code. ``CheckpointError`` otherwise (one line)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)|Unsupported operand \d+", str(e))
        what = found[1] or found[0] if found else str(e).strip().splitlines()[0][:200]
        raise CheckpointError(f"checkpoint {path}: refused to load: it holds {what}, not only tensors and "
                              f"plain values (arx loads checkpoints with weights_only=True)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot read ({type(e).__name__}: "
                              f"{(str(e).strip().splitlines() or [''])[0][:200]})") from None
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        raise CheckpointError(f"checkpoint {path}: not an arx training state (expected keys "
                              f"{', '.join(sorted(STATE_KEYS))})")
    return state


def load_state(checkpoint, model, optimizer, scheduler, scaler, regime) -> int:
    """Restore everything from a Ray checkpoint; returns the next epoch to run."""
    with checkpoint.as_directory() as d:
        state = read_state(os.path.join(d, STATE_FILE))
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    regime.load_state_dict(state["regime"])
    if "rng" in state:
        _set_rng_state(state["rng"])
    return state["epoch"] + 1


def _quiet_report_logs() -> None:
    """Ray 2.60 logs every ``ray.train.report`` at INFO under a logger named by the file's *path*
    (``logging.getLogger(__file__)`` in execution/context.py), so ``RunConfig(logging_config=...)`` misses
    it; give it the same level (``ARX_TRAIN_LOG_LEVEL``, default WARNING)."""
    from trainables.compat import train_report_logger

    logger = train_report_logger()
    if logger is not None:  # None: another Ray layout, nothing to quiet
        logger.setLevel(train_log_level())


class Parts(NamedTuple):
    """Everything a checkpoint holds besides the epoch (``save_state(d, *parts, epoch)``)."""
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    scaler: Any
    regime: Any


@dataclass
class Worker:
    """What the loop's steps share: the runtime, the trial, its data, its tracker and its phase stamps."""
    session: Any
    cfg: TrialConfig
    device: torch.device
    tracker: RankZeroTracker
    stamps: dict
    data: Any = None
    train_set: Any = None
    test_set: Any = None
    t_trial: float = 0.0


def train_fn_per_worker(loop_config: dict, stamps: dict | None = None, session=None) -> None:
    """The per-worker loop (entered through ``trainables/entry.py``). ``loop_config``: {"trial": TrialConfig dict,
    "tracking": {...}}; ``stamps``: the entry's phase stamps (``trainables/timing.py``), sent with the final result;
    ``session``: its runtime (``trainables/session.py``: a Ray Train worker by default, or the Tune trial process)."""
    stamps = dict(stamps or {})
    stamps.setdefault("timing/worker_start", time.time())
    stamps.setdefault("timing/loop_imported", time.time())
    if session is None:
        _quiet_report_logs()
        session = TrainSession()
    cfg = TrialConfig.parse(loop_config["trial"])  # validated again at the process boundary
    w = Worker(session, cfg, session.device(), RankZeroTracker(loop_config.get("tracking"), session.rank), stamps)
    w.tracker.set_tags({NODE_ID_TAG: ray.get_runtime_context().get_node_id()})
    _open_data(w, loop_config.get("data_cache"))
    parts, start = _build_parts(w)
    w.t_trial = time.perf_counter()
    stamp(stamps, "loop_start")
    logs = _train_epochs(w, parts, start)
    if logs is not None:  # None: a non-finite loss, reported as the trial's failure
        _evaluate_and_finish(w, parts, logs)


def _open_data(w: Worker, cache: str | None) -> None:
    """The trial's dataset and both splits (decoded here); tags what they left out (skipped corrupt files, pets
    without a box)."""
    w.data = data = build_dataset(w.cfg.dataset, cache)
    w.train_set, w.test_set = data.split("train"), data.split("test")
    stamp(w.stamps, "data_built")
    if skipped := sum(map(len, data.skipped.values())):  # dataset.skip_corrupt left files out
        w.tracker.set_tags({SKIPPED_CORRUPT_TAG: skipped})
    if (unboxed := getattr(data, "unboxed", {}).get("test")) is not None:  # pets boxes: whole, no cat/dog box
        w.tracker.set_tags({UNBOXED_TAG: unboxed})


def _build_parts(w: Worker) -> tuple[Parts, int]:
    """Model, optimizer, scheduler, scaler and regime on the device, restored from the session's checkpoint if it
    has one; and the first epoch to run."""
    cfg, device = w.cfg, w.device
    torch.manual_seed(cfg.seed)  # the same initialisation on every rank
    model, regime = build_model_and_regime(cfg, w.data.num_classes, w.data.in_chans)
    model = model.to(device)
    if device.type == "cuda" and cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    parts = Parts(model, optimizer, build_scheduler(cfg.optim, optimizer),
                  torch.amp.GradScaler(device.type, enabled=cfg.optim.amp and device.type == "cuda"), regime)
    ckpt = w.session.get_checkpoint()
    if ckpt is None:
        return parts, 0
    start = load_state(ckpt, *parts)
    if w.session.unregistered:
        _report_again(w.session, ckpt)
    return parts, start


def _report_again(session, ckpt) -> None:
    """Report a checkpoint's epoch once more (without the checkpoint) when Ray never registered the checkpoint
    (``trainables/session.py`` ``newest_persisted``): the killed attempt's report of that epoch may never have
    reached Tune, whose early-stopping scheduler decides at rung epochs. The scheduler keeps one decision per rung
    and trial, so a report it had already seen changes nothing. Every rank calls it (Ray Train's report is
    collective); the session's choice of checkpoint is the same on every rank."""
    with ckpt.as_directory() as d:
        report = read_state(os.path.join(d, STATE_FILE)).get("report")
    if report:
        session.report(report)


def _train_epochs(w: Worker, parts: Parts, start: int) -> dict[str, float] | None:
    """Epochs ``start..epochs-1``, each logged, rung-evaluated and reported (with a checkpoint when due); the last
    epoch's logs, or None after a non-finite loss (the trial is then reported as failed)."""
    cfg, session, stamps = w.cfg, w.session, w.stamps
    model, optimizer, scheduler, scaler, regime = parts
    ddp_model = session.prepare_model(model)
    logs: dict[str, float] = {}
    for epoch in range(start, cfg.optim.epochs):
        t0 = time.perf_counter()
        loader = _loader(w.train_set, cfg, session.rank, session.world, epoch)
        regime.start_epoch(epoch, cfg.optim.epochs)
        try:
            logs = train_epoch(ddp_model, regime, optimizer, loader, w.device, cfg, scaler, epoch, session.world,
                               None if stamps.get("timing/first_step") else lambda: stamp(stamps, "first_step"))
        except NonFiniteLoss as e:
            w.tracker.fail(str(e))
            session.report({"epoch": epoch, "arx_failed": str(e)})
            return None
        scheduler.step()
        dt = time.perf_counter() - t0
        logs |= {"train/epoch_time": dt, "train/images_per_s": logs["train/images"] / dt,
                 "train/lr": optimizer.param_groups[0]["lr"], **regime.epoch_logs()}
        logs |= rung_metrics(cfg, epoch, model, regime, w.device, w.test_set, w.data.num_classes, session.rank,
                             session.world, time.perf_counter() - w.t_trial)  # {} unless a rung epoch (rungs.py)
        w.tracker.log_metrics(logs, step=epoch)
        _report_epoch(session, cfg, epoch, logs, parts)
    return logs


def _evaluate_and_finish(w: Worker, parts: Parts, logs: dict[str, float]) -> None:
    """The final evaluation, logged to MLflow, and the final report with the final state as its checkpoint (Train
    V2 keeps only metrics attached to checkpoints)."""
    cfg, session, rank = w.cfg, w.session, w.session.rank
    parts.model.eval()
    ectx = EvalContext(model=parts.regime.eval_model(unwrap(parts.model)), cfg=cfg, regime=parts.regime,
                       device=w.device, num_classes=w.data.num_classes)
    final = evaluate(ectx, w.test_set, rank, session.world)
    final["cost/device_seconds"] = (time.perf_counter() - w.t_trial) * session.world
    stamp(w.stamps, "eval_end")
    w.tracker.finish(final, ectx.tags, ectx.artifacts, ectx.settings)
    final_metrics = {**logs, "epoch": cfg.optim.epochs, "arx_done": True, **final,
                     "arx_tracking_pending": w.tracker.pending}  # MLflow writes left for `arx sync`
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            save_state(d, *parts, cfg.optim.epochs - 1)
        stamp(w.stamps, "final_report")
        session.report(final_metrics | w.stamps, checkpoint_dir=d if rank == 0 else None)


def _report_epoch(session, cfg, epoch, logs, parts: Parts) -> None:
    metrics = {"epoch": epoch, **logs}
    last = epoch == cfg.optim.epochs - 1
    if (epoch + 1) % cfg.checkpoint.every_epochs == 0 or last:
        with tempfile.TemporaryDirectory() as d:
            if session.rank == 0:
                save_state(d, *parts, epoch, report=metrics)
            session.report(metrics, checkpoint_dir=d if session.rank == 0 else None)
    else:
        session.report(metrics)
