"""Recording the pool of ``arx bench sweep``: trials of an embedded search space run to the full budget, with a
rung evaluation (``trainables/rungs.py``) after every rung epoch and the full evaluation of the objectives at the
end, timed per epoch. In-process and on one device (the Ray layers add no science and would only add overhead
to the recorded seconds); the trials are drawn by Optuna's random sampler from the sweep's own ``SearchSpace``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch


def pool_spec(quick: bool):
    """The default sweep's space and objectives with rungs at 1, 2, 4 of 6 epochs (η = 2), on half of its
    training data (512 images, batch 32: 96 steps, enough for the small CNN to learn the shapes; 128 images gave
    chance accuracy in every trial); rung evaluations on 32 and final evaluations on 64 test images, PGD-5
    instead of PGD-10. ``quick``: 3 epochs (rungs 1, 2)."""
    from sweeps.spec import load_spec

    sets = ["early_stopping={reduction_factor: 2, min_epochs: 1, images: 32}", "base.dataset.params.n_train=512",
            "base.dataset.params.n_test=128", "base.evaluation.num_images=64", "base.evaluation.robust.pgd_steps=5",
            "base.optim.epochs=6", "base.optim.batch_size=32"]
    if quick:
        sets += ["base.optim.epochs=3"]
    return load_spec(None, sets)


def sample_trials(spec, n: int, seed: int) -> list[dict]:
    import optuna

    from sweeps.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), directions=["maximize"])
    space = SearchSpace(spec)
    return [space(study.ask())["trial"] for _ in range(n)]


def record_trial(data: dict, keys: list[str], device) -> dict:
    from trainables.config import TrialConfig
    from trainables.data import build_dataset
    from trainables.evaluation import EvalContext, evaluate
    from trainables.loop import _loader, build_model_and_regime, train_epoch
    from trainables.models import unwrap
    from trainables.optim import build_optimizer, build_scheduler
    from trainables.rungs import PREFIX, rung_metrics

    cfg = TrialConfig.parse(data)
    ds = build_dataset(cfg.dataset)
    train_set, test_set = ds.split("train"), ds.split("test")
    torch.manual_seed(cfg.seed)
    model, regime = build_model_and_regime(cfg, ds.num_classes, ds.in_chans)
    model = model.to(device)
    opt = build_optimizer(cfg.optim, model.parameters())
    sched = build_scheduler(cfg.optim, opt)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.optim.amp and device.type == "cuda")
    out = {"regime": cfg.regime.name, "params": cfg.regime.params, "lr": cfg.optim.lr, "epoch_s": [], "rungs": {}}
    for epoch in range(cfg.optim.epochs):
        regime.start_epoch(epoch, cfg.optim.epochs)
        t0 = time.perf_counter()
        train_epoch(model, regime, opt, _loader(train_set, cfg, 0, 1, epoch), device, cfg, scaler, epoch)
        sched.step()
        out["epoch_s"].append(time.perf_counter() - t0)
        r = rung_metrics(cfg, epoch, model, regime, device, test_set, ds.num_classes, 0, 1, 0.0)
        if r:
            out["rungs"][str(epoch + 1)] = {"values": [r[PREFIX + k] for k in keys], "eval_s": r[PREFIX + "eval_seconds"]}
    model.eval()
    t0 = time.perf_counter()
    ctx = EvalContext(model=regime.eval_model(unwrap(model)), cfg=cfg, regime=regime, device=device,
                      num_classes=ds.num_classes)
    final = evaluate(ctx, test_set, keys=keys)
    out |= {"final": [final.get(k, float("nan")) for k in keys], "final_eval_s": time.perf_counter() - t0}
    return out


def record_pool(path: Path, n: int, quick: bool, seed: int = 0, log=print) -> dict:
    """Record ``n`` trials into ``path`` (JSON, rewritten after each trial; an interrupted recording resumes)."""
    spec = pool_spec(quick)
    keys, modes = spec.metric_names, spec.modes
    rungs = list(spec.trial_base().rungs.epochs)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pool = json.loads(path.read_text()) if path.exists() else {}
    if pool.get("keys") != keys or pool.get("rungs") != rungs or pool.get("quick") != quick:
        pool = {"keys": keys, "modes": modes, "rungs": rungs, "quick": quick, "device": device.type,
                "eta": spec.early_stopping.reduction_factor, "trials": []}
    todo = sample_trials(spec, n, seed)
    for i in range(len(pool["trials"]), n):
        t0 = time.perf_counter()
        pool["trials"].append(record_trial(todo[i], keys, device))
        log(f"  pool trial {i + 1}/{n} ({pool['trials'][-1]['regime']}): {time.perf_counter() - t0:.1f} s", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(pool))
    return pool
