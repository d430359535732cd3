"""The replay simulation of ``arx bench sweep`` on a synthetic pool (analysis/bench/_replay.py, sweep.py)."""
import math
import random

import pytest

from analysis.bench import _replay as rp
from analysis.bench.sweep import replay_all, rows


def _pool(n=12, seed=0):
    rnd = random.Random(seed)
    trials = []
    for _ in range(n):
        q = rnd.random()  # a trial's quality: its rung values and final values grow with it
        trials.append({"epoch_s": [1.0] * 8,
                       "rungs": {str(r): {"values": [q * r / 8, 1 - q * r / 8], "eval_s": 0.1} for r in (1, 2, 4)},
                       "final": [q, 1 - q / 2], "final_eval_s": 0.5})
    return {"trials": trials, "rungs": [1, 2, 4], "eta": 2, "keys": ["acc/top1", "robust/pgd"],
            "modes": ["max", "min"]}


def test_no_stopping_runs_every_trial_to_the_end_and_costs_its_recorded_seconds():
    pool = _pool()
    run = rp.replay(pool["trials"], rp.never(), [1, 2, 4], 1, 10 * 8.8 + 1e-6, 0, lambda pts: len(pts))
    assert run.stops == 0 and run.hv[-1] == 10  # 8 epochs + 3 rung evals + final eval = 8.8 s per trial
    assert run.device_s[1:] == pytest.approx([8.8 * i for i in range(1, 11)])  # float64 running sums: rel 1e-6


def test_replay_is_seeded_and_mosh_stops_at_rungs():
    pool = _pool()
    hv = lambda pts: max(p[0] for p in pts)  # noqa: E731
    a = rp.replay(pool["trials"], rp.mosh(2, pool["modes"]), [1, 2, 4], 3, 200, 7, hv)
    b = rp.replay(pool["trials"], rp.mosh(2, pool["modes"]), [1, 2, 4], 3, 200, 7, hv)
    assert (a.device_s, a.hv, a.stops) == (b.device_s, b.hv, b.stops) and a.stops > 0


def test_rows_on_a_pool_where_rungs_predict_the_end():
    out = {r["bench"]: r for r in rows(replay_all(_pool(), seeds=4, workers=2, draws=8))}
    assert set(out) == {"sweep/none", "sweep/mosh", "sweep/asha", "sweep/random"}
    # no stopping reaches its own final hypervolume at or before its budget (later trials may add nothing)
    assert out["sweep/none"]["ratio"] <= 1.0 and out["sweep/none"]["hv_at_equal_budget"] == 1.0
    assert out["sweep/mosh"]["hv_at_equal_budget"] >= 1.0  # same budget, more good trials finished
    assert out["sweep/mosh"]["ratio"] is None or out["sweep/mosh"]["ratio"] < 1.0
    assert not math.isnan(out["sweep/random"]["stop_rate"])
