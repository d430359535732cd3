"""Replay of early-stopping strategies over a recorded pool of learning curves (``arx bench sweep``).

The way the HPO field compares schedulers on tabulated benchmarks (HPOBench / YAHPO-style surrogates, here
the real recorded curves): ``W`` simulated workers draw trials from the pool with replacement in a seeded
random order; a trial costs its recorded device-seconds per epoch (plus its recorded rung-evaluation and final
evaluation seconds); at each rung a strategy decides, asynchronously, against the rung results recorded so
far in simulated time. Device-seconds consumed at simulated time ``t`` = ``W * t`` (every worker is busy).

Strategies (``decide(rung, trial_key, values, recorded) -> bool``, True = continue):
* ``none``: never stops (the full budget);
* ``mosh``: arx's multi-objective successive halving (``sweeps/mo_rank.py``);
* ``asha``: Ray's single-objective ASHA on the first objective (``_Bracket.on_result``: stop iff the value is
  below ``nanpercentile(recorded, (1 - 1/η) * 100)``, the trial's own value included);
* ``random``: stops with probability p at each rung, p = mosh's stop rate for the same seed (the control).

A pool entry: ``{"epoch_s": [...], "rungs": {"<epoch>": {"values": [...], "eval_s": s}}, "final": [...],
"final_eval_s": s}``; values in the objective order, final values from the trial's full evaluation.
"""
from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Run:
    """One replay: hypervolume after each completed trial, against device-seconds; stop decisions."""
    device_s: list[float] = field(default_factory=lambda: [0.0])
    hv: list[float] = field(default_factory=lambda: [0.0])
    decisions: int = 0
    stops: int = 0

    def hv_at(self, budget: float) -> float:
        i = int(np.searchsorted(self.device_s, budget, side="right")) - 1
        return self.hv[max(i, 0)]

    def reach(self, target: float) -> float:
        """Device-seconds at which the hypervolume first reaches ``target`` (inf: never)."""
        for s, h in zip(self.device_s, self.hv):
            if h >= target - 1e-12:
                return s
        return math.inf


def mosh(eta: int, modes: list[str]):
    from sweeps.mo_rank import Record, keep

    def decide(rung, key, values, recorded, rng):
        recs = [Record(k, tuple(v)) for k, v in recorded.items()]
        return keep(recs, key, eta, modes)
    return decide


def asha(eta: int, modes: list[str]):
    sign = 1.0 if modes[0] == "max" else -1.0

    def decide(rung, key, values, recorded, rng):
        scores = [sign * v[0] for v in recorded.values()]
        cutoff = np.nanpercentile(scores, (1 - 1 / eta) * 100)
        return not (sign * values[0] < cutoff)
    return decide


def random_stop(p: float):
    def decide(rung, key, values, recorded, rng):
        return rng.random() >= p
    return decide


def never():
    return lambda rung, key, values, recorded, rng: True


def replay(pool: list[dict], decide, rungs: list[int], workers: int, budget: float, seed: int, hv_of) -> Run:
    """Simulate until ``budget`` device-seconds are consumed; ``hv_of(list of final value tuples)``."""
    draw, rng = random.Random(seed), random.Random(seed + 10_000)
    run, finals, recorded = Run(), [], {r: {} for r in rungs}
    events, n = [], 0  # (time, seq, worker, trial key, pool index, next rung position)

    def start(worker, t):
        nonlocal n
        idx = draw.randrange(len(pool))
        heapq.heappush(events, (t + _segment(pool[idx], 0, rungs, 0), n, worker, f"{n:05d}", idx, 0))
        n += 1

    for w in range(workers):
        start(w, 0.0)
    while events:
        t, _, w, key, idx, pos = heapq.heappop(events)
        if workers * t > budget:
            break
        entry = pool[idx]
        if pos < len(rungs):  # at rung ``rungs[pos]``
            values = entry["rungs"][str(rungs[pos])]["values"]
            recorded[rungs[pos]][key] = values
            go = decide(rungs[pos], key, values, recorded[rungs[pos]], rng)
            run.decisions, run.stops = run.decisions + 1, run.stops + (not go)
            if go:
                heapq.heappush(events, (t + _segment(entry, rungs[pos], rungs, pos + 1), n, w, key, idx, pos + 1))
                n += 1
                continue
        else:  # finished the full budget
            finals.append(tuple(entry["final"]))
            run.device_s.append(workers * t)
            run.hv.append(hv_of(finals))
        start(w, t)
    return run


def _segment(entry: dict, start_epoch: int, rungs: list[int], pos: int) -> float:
    """Seconds from ``start_epoch`` to the next rung (its evaluation included) or to the end (final eval)."""
    end = rungs[pos] if pos < len(rungs) else len(entry["epoch_s"])
    s = sum(entry["epoch_s"][start_epoch:end])
    return s + (entry["rungs"][str(end)]["eval_s"] if pos < len(rungs) else entry["final_eval_s"])
