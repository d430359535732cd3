"""``arx bench overhead``: the seconds a trial holds its workers outside training and evaluation (issue #16).

Short real sweeps through the real path (``run_sweep``: Tune -> trial driver -> Ray Train -> worker loop ->
MLflow) on the embedded ``shapes`` data, one trial at a time, first with 1-worker trials, then with 2-worker DDP
trials. The phase seconds come from the wall-clock stamps the trial driver and rank 0 of the worker loop record
(``trainables/timing.py``; each trial's ``timing.json``), never from estimates. Rows ``overhead/<n>worker``:
``ours_s`` = median per-trial overhead (trial wall time minus training + evaluation), the median seconds of every
phase, ``overhead_share`` (summed overhead / summed trial wall time) and ``sweep_wall_per_trial_s`` (the sweep's
wall time / trials: what the trial driver's stamps cannot see, Tune's actor start, is in it). Goals: <= 5 s for
1-worker, <= 12 s for 2-worker trials. Trials per row: 4 (``--quick``: 1; ``ARX_BENCH_OVERHEAD_TRIALS``); the
rows name the overhead switches in effect (``ARX_TRIAL_PATH=train ARX_LIGHT_ENTRY=0 ARX_DATA_CACHE=0
RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1``: the path before issue #16; ``ARX_REUSE_ACTORS=0``: a fresh trial process per
in-process trial). ``between_trials_s``: the median gap from one trial's end to the next one's start.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from analysis.bench import register_bench

GOALS = {1: 5.0, 2: 12.0}


def bench_spec(workers: int, trials: int, quick: bool) -> dict:
    """A tiny sweep: smallcnn on 32 px shapes, accuracy only, ``trials`` trials one at a time."""
    return {"name": f"bench-overhead-{workers}w",
            "base": {"dataset": {"name": "shapes", "image_size": 32, "train_size": 64 if quick else 128,
                                 "test_size": 32},
                     "model": {"backbone": "smallcnn"},
                     "optim": {"epochs": 1 if quick else 2, "batch_size": 32, "lr": 3e-3},
                     "evaluation": {"groups": ["accuracy"], "num_images": 32},
                     "resources": {"num_workers": workers}},
            "regimes": {"standard": {}},
            "objectives": [{"key": "acc/top1", "direction": "max"}],
            "sampler": {"name": "random", "seed": 0}, "num_samples": trials, "max_concurrent": 1}


def run_sweep_timed(spec: dict, root: Path) -> tuple[list[dict], float]:
    """Run the sweep; returns every completed trial's stamps and the sweep's wall seconds (Tuner fit)."""
    import yaml

    from sweeps.launch import run_sweep

    path = root / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    t0 = time.time()
    run_sweep(path, root / "results")
    wall = time.time() - t0
    files = sorted((root / "results" / "ray" / "train_runs").glob("trial-*/timing.json"))
    return [json.loads(f.read_text()) for f in files], wall


def summarize(workers: int, stamps: list[dict], sweep_wall: float) -> dict:
    from trainables.timing import OVERHEAD_PHASES, phases

    per_trial = [phases(s) for s in stamps]
    per_trial = [p for p in per_trial if "overhead" in p]
    row = {"bench": f"overhead/{workers}worker", "trials": len(per_trial), "peer_s": None, "ratio": None,
           "target": f"<= {GOALS[workers]:g} s per trial"}
    if not per_trial:
        return row | {"ours_s": None, "error": "no trial left its timing stamps"}
    med = {k: statistics.median(p[k] for p in per_trial) for k in per_trial[0] if all(k in p for p in per_trial)}
    row |= {"ours_s": med["overhead"], "met": med["overhead"] <= GOALS[workers],
            "overhead_share": sum(p["overhead"] for p in per_trial) / sum(p["wall"] for p in per_trial),
            "wall_s": med["wall"], "compute_s": med["compute"], "first_step_s": med.get("first_step"),
            "sweep_wall_per_trial_s": sweep_wall / len(per_trial), "between_trials_s": between_trials(stamps)}
    return row | {f"{p}_s": med.get(p) for p in OVERHEAD_PHASES}


def between_trials(stamps: list[dict]) -> float | None:
    """Median seconds from one trial's end to the next one's start (trials one at a time): what no stamp of a trial
    sees, Tune starting (or reusing) the trial process and scheduling it. None with fewer than 2 trials."""
    import statistics

    spans = sorted((s["timing/trial_start"], s["timing/trial_end"]) for s in stamps
                   if "timing/trial_start" in s and "timing/trial_end" in s)
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    return statistics.median(gaps) if gaps else None


def settings() -> dict:
    """The overhead switches this run measures (``trainables/entry.py``, ``trainables/data/_cache.py``)."""
    import os

    from trainables.data._cache import cache_dir

    return {"light_entry": os.environ.get("ARX_LIGHT_ENTRY", "1") != "0", "data_cache": cache_dir() is not None,
            "trial_path": os.environ.get("ARX_TRIAL_PATH", "auto"), "reuse_actors": os.environ.get("ARX_REUSE_ACTORS", "1") != "0",
            "preemption_watcher": os.environ.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1").lower() in ("1", "true")}


@register_bench("overhead")
def run(quick: bool = False) -> list[dict]:
    import os

    trials = int(os.environ.get("ARX_BENCH_OVERHEAD_TRIALS", 1 if quick else 4))
    rows = []
    with tempfile.TemporaryDirectory(prefix="arx-bench-overhead-cache-") as cache:
        fresh = os.environ.get("ARX_DATA_CACHE", "") == ""
        if fresh:  # a cold cache, as for a fresh sweep (inherited by the Ray processes started here)
            os.environ["ARX_DATA_CACHE"] = cache
        try:
            for workers in (1, 2):
                rows.append(_one(workers, trials, quick))
        finally:
            if fresh:
                os.environ.pop("ARX_DATA_CACHE")
    return rows


def _one(workers: int, trials: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="arx-bench-overhead-") as d:
        stamps, wall = run_sweep_timed(bench_spec(workers, trials, quick), Path(d))
        return summarize(workers, stamps, wall) | settings()
