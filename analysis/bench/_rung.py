"""The ``evaluation/rung`` row of ``arx bench explain``: what an early-stopping rung evaluation costs.

``ratio`` = seconds of ``evaluate(..., keys=<the default sweep's objectives>)`` on 64 test images / seconds of
one training epoch of the default sweep's base trial (``sweeps/configs/default.yaml``, regime ``standard``),
same process, same threads, same device (goal ≤ 0.10). The epoch is timed once after one warm-up epoch; the
evaluation is the median of ``repeats`` runs after one warm-up run.
"""
from __future__ import annotations

import time

import torch

from analysis.bench.timing import median_seconds


def _epoch_seconds(cfg, train_set, model, regime, device) -> float:
    from trainables.loop import _loader, train_epoch
    from trainables.optim import build_optimizer, build_scheduler

    optimizer = build_optimizer(cfg.optim, model.parameters())
    build_scheduler(cfg.optim, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.optim.amp and device.type == "cuda")
    times = []
    for epoch in range(2):  # the first epoch warms up allocators and kernels
        regime.start_epoch(epoch, cfg.optim.epochs)
        t0 = time.perf_counter()
        train_epoch(model, regime, optimizer, _loader(train_set, cfg, 0, 1, epoch), device, cfg, scaler, epoch)
        times.append(time.perf_counter() - t0)
    return times[-1]


def rung_row(quick: bool = False) -> dict:
    from sweeps.spec import load_spec
    from trainables.config import TrialConfig
    from trainables.data import build_dataset
    from trainables.evaluation import EvalContext, evaluate
    from trainables.loop import build_model_and_regime

    spec = load_spec(None)
    keys = [o.key for o in spec.objectives]
    cfg = TrialConfig.parse(spec.base | {"evaluation": spec.base.get("evaluation", {}) | {"num_images": 64}})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = build_dataset(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model, regime = build_model_and_regime(cfg, data.num_classes, data.in_chans)
    model = model.to(device)
    epoch_s = _epoch_seconds(cfg, data.split("train"), model, regime, device)
    test64 = torch.utils.data.Subset(data.split("test"), range(64))
    model.eval()

    def rung():
        ctx = EvalContext(model=regime.eval_model(model), cfg=cfg, regime=regime, device=device,
                          num_classes=data.num_classes)
        return evaluate(ctx, test64, keys=keys)

    eval_s = median_seconds(rung, 2 if quick else 5, warmup=1)
    return {"bench": "evaluation/rung", "ours_s": eval_s, "peer_s": epoch_s, "ratio": eval_s / epoch_s,
            "target": "<= 0.10 (one training epoch of the default sweep)", "device": device.type,
            "keys": ",".join(keys), "images": 64, "train_images": len(data.split("train"))}
