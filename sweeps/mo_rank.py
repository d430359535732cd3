"""The multi-objective rank of the trials recorded at one rung, and the successive-halving decision.

``rank_order(records, modes)`` orders a *set* of recorded results best first; ``keep(records, trial_id, eta,
modes)`` says whether ``trial_id`` continues past the rung (it ranks in the top ``len(records) // eta``).
Both are pure functions of the set: the input order never matters (Syne Tune's MOASHA is not; issue #15).

The order, best first:

1. **Feasible** trials (every objective finite, total constraint violation 0), by
   * their **non-dominated front** (NSGA-II fast non-dominated sorting, Deb et al. 2002, sec. III-A), each
     objective in its own direction ("max" or "min");
   * inside a front, larger **crowding distance** first (Deb et al. 2002, sec. III-B), computed over that
     front alone: per objective, the front sorted by ``(value, trial_id)``; the two ends get infinity, the
     others the gap between their neighbours divided by the objective's range over the front; summed;
   * remaining ties by ``trial_id`` (string order).
2. **Infeasible** trials (finite objectives, violation > 0): smaller total violation first (Deb's
   constraint domination), ties by ``trial_id``.
3. **NaN** trials (any objective NaN or missing; also a NaN violation): last, by ``trial_id``.

A trial that dominates every other recorded one is alone on front 1, so it is first and always continues.
``keep`` continues every trial while fewer than ``eta`` are recorded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Record:
    """One trial's rung result: objective values (in the sweep's objective order) and the summed positive
    constraint violation (0 = feasible; ``math.inf`` when a constraint metric is missing)."""
    trial_id: str
    values: tuple[float, ...]
    violation: float = 0.0

    @property
    def is_nan(self) -> bool:
        return any(math.isnan(v) for v in self.values) or math.isnan(self.violation)


def _minimised(records: Sequence[Record], modes: Sequence[str]) -> np.ndarray:
    """Values as a quantity to minimise: [n, m] (a "max" objective negated)."""
    sign = np.array([-1.0 if m == "max" else 1.0 for m in modes])
    return np.array([r.values for r in records], dtype=float).reshape(len(records), len(modes)) * sign


def fronts(y: np.ndarray) -> list[list[int]]:
    """Non-dominated fronts of the rows of ``y`` (minimisation), best first; row indices in each front."""
    le = (y[:, None, :] <= y[None, :, :]).all(-1)
    lt = (y[:, None, :] < y[None, :, :]).any(-1)
    dominates = le & lt  # [i, j]: i dominates j
    count = dominates.sum(0)  # how many dominate j
    out, current = [], [j for j in range(len(y)) if count[j] == 0]
    while current:
        out.append(current)
        nxt = []
        for i in current:
            for j in np.flatnonzero(dominates[i]):
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(int(j))
        current = sorted(nxt)
    return out


def crowding(y: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Crowding distance of each row of one front (ties in a value broken by ``ids``, so it is a function
    of the set)."""
    n, m = y.shape
    dist = np.zeros(n)
    for k in range(m):
        order = sorted(range(n), key=lambda i: (y[i, k], ids[i]))
        dist[order[0]] = dist[order[-1]] = math.inf
        span = y[order[-1], k] - y[order[0], k]
        if n < 3 or not span > 0 or not math.isfinite(span):
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (y[b, k] - y[a, k]) / span
    return dist


def rank_order(records: Sequence[Record], modes: Sequence[str]) -> list[str]:
    """Trial ids, best first (see the module docstring)."""
    nan = sorted(r.trial_id for r in records if r.is_nan)
    bad = sorted((r for r in records if not r.is_nan and r.violation > 0), key=lambda r: (r.violation, r.trial_id))
    ok = sorted((r for r in records if not r.is_nan and not r.violation > 0), key=lambda r: r.trial_id)
    order: list[str] = []
    if ok:
        y = _minimised(ok, modes)
        for front in fronts(y):
            ids = [ok[i].trial_id for i in front]
            d = crowding(y[front], ids)
            order += [t for _, t in sorted(zip(-d, ids))]
    return order + [r.trial_id for r in bad] + nan


def keep(records: Sequence[Record], trial_id: str, eta: int, modes: Sequence[str]) -> bool:
    """Continue ``trial_id`` past the rung whose recorded results are ``records`` (it is one of them)?"""
    if len(records) < eta:
        return True
    return rank_order(records, modes).index(trial_id) < len(records) // eta
