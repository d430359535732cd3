"""``arx bench sweep``: early-stopping strategies replayed over a recorded pool of trials (issue #15).

(a) The pool: ``POOL_TRIALS`` trials of the default sweep's space and objectives on smaller data (rungs at
epochs 1, 2, 4 of 6, η = 2, rung evaluations on 32 test images; ``analysis/bench/_pool.py``), recorded once into
``$ARX_BENCH_POOL`` (default ``arx_results/bench/sweep_pool[_quick].json``) and read back on later runs.
(b) Replays (``analysis/bench/_replay.py``) with ``WORKERS`` simulated workers, ``SEEDS`` seeded draw orders:
no stopping, arx's multi-objective successive halving (mosh), Ray-style ASHA on the first objective, random
stopping at mosh's stop rate. (c) Hypervolume of the fully trained trials' final objectives (reference point:
the worst final value of each objective over the whole pool) against device-seconds; the no-stopping strategy
runs ``DRAWS`` trials, its device-seconds are the budget B of every strategy.

Rows ``sweep/<strategy>``: ``ratio`` = median over seeds of (device-seconds to reach the no-stopping final
hypervolume of that seed) / B (null when the median never reaches it; goal for mosh <= 0.5),
``hv_at_equal_budget`` = median of (hypervolume at B) / (no-stopping final hypervolume); IQRs alongside. A PNG
of the median curves with inter-quartile bands is written next to the pool.
"""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import numpy as np

from analysis.bench import register_bench

POOL_TRIALS, WORKERS, SEEDS, DRAWS = 24, 4, 25, 32


def pool_path(quick: bool) -> Path:
    default = Path(os.environ.get("ARX_RESULTS", "arx_results")) / "bench" / f"sweep_pool{'_quick' if quick else ''}.json"
    return Path(os.environ.get("ARX_BENCH_POOL", default))


def _hv_fn(pool: dict):
    from analysis import pareto

    objs = list(zip(pool["keys"], pool["modes"]))
    finals = np.array([t["final"] for t in pool["trials"]], dtype=float)
    ref = pareto.reference_point(finals, objs)
    return lambda pts: pareto.hypervolume(np.array(pts, dtype=float), objs, ref=ref)


def replay_all(pool: dict, seeds: int = SEEDS, workers: int = WORKERS, draws: int = DRAWS) -> dict[str, list]:
    from analysis.bench import _replay as rp

    trials, rungs, eta, modes = pool["trials"], pool["rungs"], pool["eta"], pool["modes"]
    hv_of = _hv_fn(pool)
    runs: dict[str, list] = {"none": [], "mosh": [], "asha": [], "random": []}
    for seed in range(seeds):
        budget = _budget(trials, rungs, workers, draws, seed, hv_of)
        base = rp.replay(trials, rp.never(), rungs, workers, budget, seed, hv_of)
        m = rp.replay(trials, rp.mosh(eta, modes), rungs, workers, budget, seed, hv_of)
        a = rp.replay(trials, rp.asha(eta, modes), rungs, workers, budget, seed, hv_of)
        r = rp.replay(trials, rp.random_stop(m.stops / max(m.decisions, 1)), rungs, workers, budget, seed, hv_of)
        for name, run in (("none", base), ("mosh", m), ("asha", a), ("random", r)):
            runs[name].append((budget, run))
    return runs


def _budget(trials, rungs, workers, draws, seed, hv_of) -> float:
    """Device-seconds at which the no-stopping strategy has completed ``draws`` trials (simulated)."""
    from analysis.bench import _replay as rp

    probe = rp.replay(trials, rp.never(), rungs, workers, _upper(trials, draws, workers), seed, hv_of)
    return probe.device_s[min(draws, len(probe.device_s) - 1)]


def _upper(trials, draws, workers) -> float:
    longest = max(sum(t["epoch_s"]) + t["final_eval_s"] + sum(r["eval_s"] for r in t["rungs"].values()) for t in trials)
    return longest * (draws + workers) * workers


def rows(runs: dict[str, list]) -> list[dict]:
    out = []
    for name, per_seed in runs.items():
        ratios, at_budget = [], []
        for (budget, run), (_, base) in zip(per_seed, runs["none"]):
            target = base.hv[-1]
            ratios.append(run.reach(target) / budget)
            at_budget.append(run.hv_at(budget) / target if target > 0 else math.nan)
        med = statistics.median(ratios)
        out.append({"bench": f"sweep/{name}", "ours_s": _finite(statistics.median([r * b for r, (b, _) in zip(ratios, per_seed)])),
                    "peer_s": statistics.median(b for b, _ in per_seed), "ratio": _finite(med),
                    "ratio_iqr": _iqr(ratios), "hv_at_equal_budget": float(np.nanmedian(at_budget)),
                    "hv_iqr": _iqr(at_budget), "stop_rate": statistics.median(r.stops / max(r.decisions, 1) for _, r in per_seed),
                    "completed": statistics.median(len(r.hv) - 1 for _, r in per_seed), "seeds": len(per_seed),
                    "target": "mosh: ratio <= 0.5 and hv_at_equal_budget above asha and random" if name == "mosh" else "reported"})
    return out


def _finite(v: float):
    return None if not math.isfinite(v) else v


def _iqr(values) -> list:
    v = np.array(values, dtype=float)
    v = v[np.isfinite(v)]
    return [float(np.percentile(v, 25)), float(np.percentile(v, 75))] if len(v) else [None, None]


def plot(runs: dict[str, list], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = statistics.median(b for b, _ in runs["none"])
    grid = np.linspace(0, budget, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, per_seed in runs.items():
        curves = np.array([[run.hv_at(x * b / budget) / base.hv[-1] if base.hv[-1] > 0 else np.nan for x in grid]
                           for (b, run), (_, base) in zip(per_seed, runs["none"])])
        lo, med, hi = np.nanpercentile(curves, [25, 50, 75], axis=0)
        ax.plot(grid, med, label=name)
        ax.fill_between(grid, lo, hi, alpha=0.2)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("device-seconds (simulated, median budget)")
    ax.set_ylabel("hypervolume / no-stopping final hypervolume")
    ax.set_title(f"arx bench sweep: median and IQR over {len(runs['none'])} replay seeds")
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


@register_bench("sweep")
def run(quick: bool = False) -> list[dict]:
    import json

    from analysis.bench._pool import record_pool

    path = pool_path(quick)
    n = 8 if quick else POOL_TRIALS
    pool = json.loads(path.read_text()) if path.exists() else {}
    if len(pool.get("trials", [])) < n:
        pool = record_pool(path, n, quick)
    runs = replay_all(pool, seeds=5 if quick else SEEDS, draws=12 if quick else DRAWS)
    png = plot(runs, path.with_suffix(".png"))
    return [r | {"pool": str(path), "pool_trials": len(pool["trials"]), "png": str(png)} for r in rows(runs)]
