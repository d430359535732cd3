"""Tracking load: N concurrent trial processes log through arx's own tracking path while a driver tells Optuna.

Each trial is a real OS process doing what a sweep trial's driver and rank 0 do, with arx's own code: the
driver's ``ensure_run`` (the run, its tags and ~90 params), rank 0's ``RankZeroTracker`` (through the outbox):
a tag at start, one metrics batch per epoch, and at the end ``finish`` (final metrics, tags, effective params,
``metrics.json`` and a small parquet table), then the driver's ``close_or_queue``. Training is simulated by
sleeping ``epoch_s`` (+-20 %) per epoch: this measures the tracking store, not the model. The processes fork
from a forkserver that has imported arx once, so 64 of them start in seconds on 2 cores. The calling process
is the sweep driver: it asks Optuna (``ask``) for each trial's settings and ``tell``s each result as it comes.

Afterwards every run is read back: each epoch's metrics (every step, every value), the final metrics, the
artifacts and the status, runs per trial id (duplicates) and the Optuna study (every trial told).
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue as queue_mod
import random
import time
from pathlib import Path

EPOCH_KEYS = ("train/loss", "train/acc", "train/images", "train/epoch_time", "train/images_per_s", "train/lr")
FINAL_KEYS = ("acc/top1", "robust/acc_pgd", "cost/device_seconds")
PRELOAD = ["trainables.trainable", "mlflow.tracking", "mlflow.entities", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.store.tracking.rest_store", "alembic.command", "pandas", "pyarrow.parquet", "analysis.bench._load"]
IN_TRAINING = ("log_metrics", "set_tags")  # the calls a training loop waits for every epoch


def trial_dict(number: int, params: dict, epochs: int) -> dict:
    return {"name": f"load-{number:03d}", "seed": number, "dataset": {"name": "shapes", "image_size": 32},
            "model": {"backbone": "smallcnn"}, "regime": {"name": params["regime"]},
            "optim": {"epochs": epochs, "lr": params["lr"]}}


class _Collect(logging.Handler):
    """The outbox's warnings (a write failed and is retried, or was dropped) are errors of a load run."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage()[:300])


def _timed(latencies: dict, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    latencies.setdefault(fn.__name__, []).append(time.perf_counter() - t0)
    return out


def _epoch_logs(epoch: int, rng: random.Random, lr: float) -> dict[str, float]:
    loss = 2.3 * math.exp(-0.1 * epoch) + rng.uniform(0, 0.05)
    dt = rng.uniform(1.0, 1.5)
    return {"train/loss": loss, "train/acc": 1 - loss / 2.5, "train/images": 1024.0, "train/epoch_time": dt,
            "train/images_per_s": 1024 / dt, "train/lr": lr * 0.5 * (1 + math.cos(math.pi * epoch / 40))}


def _final(params: dict, rng: random.Random, seconds: float) -> dict[str, float]:
    acc = 0.5 + 0.4 * math.exp(-(math.log10(params["lr"]) + 2.5) ** 2) + rng.uniform(0, 0.02)
    return {"acc/top1": acc, "robust/acc_pgd": acc * (0.6 if params["regime"] != "standard" else 0.2),
            "cost/device_seconds": seconds}


def trial_process(job: dict, results) -> None:
    """One trial (see the module docstring); puts its record on ``results`` (also when it failed)."""
    collect = _Collect()
    logging.getLogger("trainables.outbox").addHandler(collect)
    out = {"number": job["number"], "error": None, "latencies": {}, "logged": {}, "pid": os.getpid()}
    try:
        _trial_body(job, out)
    except Exception as e:  # noqa: BLE001 - reported to the driver, which counts it as an error
        out["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
    out["warnings"] = collect.lines
    results.put(out)


def _trial_body(job: dict, out: dict) -> None:
    import pandas as pd

    from trainables.config import TrialConfig
    from trainables.tracking import NODE_ID_TAG, SWEEP_TAG, RankZeroTracker
    from trainables.trainable import TrackingInfo, close_or_queue, ensure_run

    t0, lat, rng = time.perf_counter(), out["latencies"], random.Random(job["number"])
    cfg = TrialConfig.parse(trial_dict(job["number"], job["params"], job["epochs"]))
    info = TrackingInfo(uri=job["uri"], experiment=job["experiment"], parent_run_id=job["parent"],
                        trial_id=f"load-{job['number']:03d}", extra_tags={SWEEP_TAG: job["experiment"]})
    out["run_id"] = run_id = _timed(lat, ensure_run, cfg, info)
    outbox = str(Path(job["root"]) / f"outbox-{job['number']:03d}")
    tracker = RankZeroTracker({"uri": job["uri"], "run_id": run_id, "outbox": outbox, "drain_s": 30.0}, 0)
    _timed(lat, tracker.set_tags, {NODE_ID_TAG: f"load-{os.getpid()}"})
    for epoch in range(job["epochs"]):
        time.sleep(job["epoch_s"] * rng.uniform(0.8, 1.2))  # the training epoch
        logs = _epoch_logs(epoch, rng, job["params"]["lr"])
        _timed(lat, tracker.log_metrics, logs, step=epoch)
        for k, v in logs.items():
            out["logged"].setdefault(k, []).append(v)
    out["final"] = final = _final(job["params"], rng, time.perf_counter() - t0)
    table = pd.DataFrame({"class": list(range(10)), "acc": [rng.random() for _ in range(10)]})
    _timed(lat, tracker.finish, final, {"eval.groups": "accuracy,robust"}, {"per_class": table},
           {"eval.eps": 8 / 255, "regime": job["params"]["regime"]})
    out["pending"] = tracker.pending + _timed(lat, close_or_queue, job["uri"], run_id, "completed", outbox)


def forkserver_context():
    """A forkserver that has imported arx, mlflow and pandas once (set before its first process starts)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm_forkserver() -> None:
    """Start the forkserver (its imports take a while) while something else, e.g. a server, starts."""
    p = forkserver_context().Process(target=time.sleep, args=(0,))
    p.start()
    p.join()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary(records: list[dict]) -> dict:
    """Latency of the calls made during training (``IN_TRAINING``) and the slowest start / end of a trial."""
    def of(names):
        return [x for r in records for name in names for x in r.get("latencies", {}).get(name, [])]

    lat = of(IN_TRAINING)
    return {"calls": len(lat), "p50_ms": 1000 * percentile(lat, 0.5), "p95_ms": 1000 * percentile(lat, 0.95),
            "max_ms": 1000 * max(lat, default=math.nan), "start_max_s": max(of(["ensure_run"]), default=math.nan),
            "end_max_s": max(of(["finish", "close_or_queue"]), default=math.nan)}


OBJECTIVES = ("acc/top1", "robust/acc_pgd")
STALL_P95_S = 1.0  # a log call slower than this at the 95th percentile stalls training (epochs of ~2 s)


def run_load(uri: str, optuna_storage, writers: int, epochs: int, epoch_s: float, root: Path,
             experiment: str = "arx-load", progress=None) -> dict:
    """``writers`` concurrent trials of about ``epochs`` x ``epoch_s`` seconds against the tracking URI ``uri``
    and the Optuna storage ``optuna_storage`` (URL or storage object); returns the checked outcome."""
    import optuna
    from mlflow.tracking import MlflowClient

    from trainables.tracking import ROLE_SWEEP, ROLE_TAG, get_or_create_experiment

    client = MlflowClient(tracking_uri=uri)
    exp_id = get_or_create_experiment(client, experiment)
    parent = client.create_run(exp_id, tags={ROLE_TAG: ROLE_SWEEP}, run_name=experiment).info.run_id
    study = optuna.create_study(storage=optuna_storage, study_name=experiment, directions=["maximize"] * 2,
                                sampler=optuna.samplers.TPESampler(seed=0))
    ctx, t0 = forkserver_context(), time.monotonic()
    results, procs, trials = ctx.Queue(), {}, {}
    for i in range(writers):
        trial = study.ask()
        params = {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
                  "regime": trial.suggest_categorical("regime", ["standard", "fgsm_at", "pgd_at"])}
        job = {"number": trial.number, "params": params, "epochs": max(1, epochs - i % 4), "epoch_s": epoch_s,
               "uri": uri, "experiment": experiment, "parent": parent, "root": str(root)}
        procs[trial.number] = ctx.Process(target=trial_process, args=(job, results), daemon=True)
        procs[trial.number].start()
        trials[trial.number] = trial
    deadline = t0 + epochs * epoch_s * 1.2 + 120 + writers * 2  # beyond it the rest count as stalled
    records = collect(study, trials, results, procs, deadline, progress)
    out = {"writers": writers, "epochs": epochs, "epoch_s": epoch_s, "wall_s": time.monotonic() - t0}
    out |= check(client, exp_id, study, records, procs) | latency_summary(records)
    out["holds"] = (not out["errors"] and out["lost"] == 0 and out["duplicate_runs"] == 0 and out["incomplete"] == 0
                    and out["optuna_told"] == writers and out["p95_ms"] <= 1000 * STALL_P95_S)
    return out


def collect(study, trials: dict, results, procs: dict, deadline: float, progress=None) -> list[dict]:
    """Tell Optuna each trial's result as it arrives (a failed trial as FAIL); trials silent past ``deadline``
    are killed and told FAIL. Returns the trial records."""
    import optuna

    records: list[dict] = []
    while len(records) < len(trials) and time.monotonic() < deadline:
        try:
            rec = results.get(timeout=min(10.0, max(0.1, deadline - time.monotonic())))
        except queue_mod.Empty:
            done = {r["number"] for r in records}
            if all(not p.is_alive() for n, p in procs.items() if n not in done):
                break  # the rest died without a record
            if progress:
                progress(f"  {len(records)}/{len(trials)} trials done")
            continue
        records.append(rec)
        if rec["error"] is None:
            study.tell(trials[rec["number"]], [rec["final"][k] for k in OBJECTIVES])
        else:
            study.tell(trials[rec["number"]], state=optuna.trial.TrialState.FAIL)
    for number, p in procs.items():
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()
        if number not in {r["number"] for r in records}:
            study.tell(trials[number], state=optuna.trial.TrialState.FAIL)
    return records


def check(client, exp_id: str, study, records: list[dict], procs: dict) -> dict:
    """Read everything back: errors, lost metrics/artifacts, duplicate runs, unfinished runs, Optuna trials."""
    from collections import Counter

    reported = {r["number"] for r in records}
    errors = [f"trial {n}: stalled (no result)" for n in procs if n not in reported]
    errors += [f"trial {n}: exit code {p.exitcode}" for n, p in procs.items() if p.exitcode not in (0, None)]
    errors += [f"trial {r['number']}: {r['error']}" for r in records if r["error"]]
    errors += [f"trial {r['number']}: outbox: {w}" for r in records for w in r["warnings"]]
    from trainables.tracking import ROLE_TAG, ROLE_TRIAL, TRIAL_ID_TAG

    runs = client.search_runs([exp_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'", max_results=10000)
    per_trial = Counter(r.data.tags.get(TRIAL_ID_TAG) for r in runs)
    lost = incomplete = 0
    for rec in records:
        if rec.get("run_id"):
            lost_here, done = _check_run(client, rec)
            lost, incomplete = lost + lost_here, incomplete + (not done)
    told = {t.number: t.values for t in study.get_trials(deepcopy=False)
            if t.state == t.state.COMPLETE}
    mismatched = sum(1 for r in records if r["error"] is None
                     and told.get(r["number"]) != [r["final"][k] for k in OBJECTIVES])
    return {"errors": errors, "lost": lost, "duplicate_runs": sum(c - 1 for c in per_trial.values()),
            "runs": len(runs), "incomplete": incomplete, "optuna_told": len(told), "optuna_mismatched": mismatched,
            "pending": sum(r.get("pending", 0) for r in records)}


def _check_run(client, rec: dict) -> tuple[int, bool]:
    """(writes of this trial missing or different in MLflow, whether the run is closed as completed)."""
    lost = 0
    for key, values in rec["logged"].items():
        history = [(m.step, m.value) for m in client.get_metric_history(rec["run_id"], key)]
        lost += len(set(enumerate(values)) - set(history)) + max(0, len(history) - len(values))
    run = client.get_run(rec["run_id"])
    final = rec.get("final") or {}
    lost += sum(1 for k, v in final.items() if run.data.metrics.get(k) != v)
    if final:
        names = {a.path for a in client.list_artifacts(rec["run_id"])}
        lost += len({"metrics.json", "per_class.parquet"} - names)
    from trainables.tracking import STATUS_TAG

    return lost, run.info.status == "FINISHED" and run.data.tags.get(STATUS_TAG) == "completed"
