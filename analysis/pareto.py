"""Pareto analysis of sweep results (numpy/pandas only; no plotting, no I/O).

Every function takes ``data`` (a DataFrame with one row per trial and one column per metric key, or a 2-D
array with one column per objective) plus the objectives and their directions:

* ``objectives``: metric keys (``["acc/top1", "robust/pgd"]``), ``{"key": ..., "direction": ...}`` dicts
  (the ``arx.objectives`` tag of a sweep's parent run), ``(key, direction)`` pairs or ``Objective``s;
* ``directions``: ``"max"``/``"min"`` (Optuna's ``"maximize"``/``"minimize"`` are accepted too), one per
  objective. When omitted, a known key takes its direction from ``trainables/metrics/keys.py``.

Conventions (the same everywhere):

* **NaN.** A row with NaN in any *used* objective is excluded: it is never on a front (``non_dominated``
  gives False, ``pareto_ranks`` gives rank 0), never counts in a hypervolume or a reference point, never
  becomes a knee or a pick. ``±inf`` values are ordinary (comparable) values.
* **Dominance.** ``a`` dominates ``b`` when ``a`` is at least as good in every objective and strictly better
  in at least one. Equal points do not dominate each other, so all copies of a non-dominated point are on
  the front (ties are kept).
* **Ranks.** Rank 1 is the non-dominated set, rank 2 the non-dominated set of the rest, and so on
  (successive fronts, as in NSGA-II); rank 0 = excluded (NaN).
* **Hypervolume.** The volume of objective space dominated by the points and bounded by the reference
  point, in the metrics' own units (the product of the objectives' units). Exact: a sweep in 2-D,
  slicing for 3-D (and, recursively, for more objectives, which is exponential but exact). The reference
  point defaults to the worst observed value of each objective over the valid rows given
  (``reference_point``); pass the same reference to compare hypervolumes of subsets (e.g. per regime).
  A point that is not strictly better than the reference in every objective adds no volume; with the
  default reference, points at the worst observed value of an objective therefore add none, and a
  single point has hypervolume 0.
* **Knee.** See ``knee_point``: the front is min-max normalised (1 = best, over the front), and the knee is
  the front point farthest from the hyperplane through the extreme points (the line through the two
  extremes in 2-D, the plane through the three in 3-D) on the side of the ideal point.
* **Constrained picks.** ``constrained_pick`` picks the best row of a target metric among the rows that
  satisfy generic constraints: fixed thresholds (``Threshold("acc/top1", ">=", 0.9)``) and "within ``tol``
  of the best value of ``key`` among some reference rows" (``NearBest("acc/top1", 0.01,
  among={"regime": "standard"})`` = "accuracy within 1 point of the best standard trial").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

_DIRS = {"max": "max", "maximize": "max", "maximise": "max", "min": "min", "minimize": "min", "minimise": "min"}


@dataclass(frozen=True)
class Objective:
    key: str
    direction: str  # "max" | "min"

    @property
    def sign(self) -> float:
        """Multiply a value by this to get a quantity to minimise."""
        return -1.0 if self.direction == "max" else 1.0


def _direction_of(key: str) -> str:
    try:
        from trainables.metrics.keys import direction
    except ImportError:  # pragma: no cover - analysis used without the trainables package
        raise ValueError(f"objective {key!r}: give its direction ('max' or 'min')") from None
    try:
        return direction(key)
    except KeyError:
        raise ValueError(f"objective {key!r} is not a known metric key; give its direction ('max' or 'min')") from None


def _norm_dir(d: Any, key: str) -> str:
    if isinstance(d, str) and d.lower() in _DIRS:
        return _DIRS[d.lower()]
    name = getattr(d, "name", None)  # optuna.study.StudyDirection
    if isinstance(name, str) and name.lower() in _DIRS:
        return _DIRS[name.lower()]
    raise ValueError(f"objective {key!r}: direction must be 'max' or 'min', got {d!r}")


def resolve_objectives(objectives: Iterable[Any] | None, directions: Sequence[Any] | str | None = None,
                       columns: Sequence[str] | None = None) -> list[Objective]:
    """Objectives in any accepted form -> ``[Objective(key, direction)]`` (see the module docstring).

    ``objectives=None`` means every column of ``columns`` (then ``directions`` is needed unless the columns
    are known metric keys). A single string direction applies to every objective.
    """
    if objectives is None:
        if columns is None:
            raise ValueError("no objectives given")
        objectives = list(columns)
    elif isinstance(objectives, (str, Objective, Mapping)):
        objectives = [objectives]
    items = list(objectives)
    if isinstance(directions, str):
        directions = [directions] * len(items)
    if directions is not None and len(directions) != len(items):
        raise ValueError(f"{len(items)} objectives but {len(directions)} directions")
    out: list[Objective] = []
    for i, obj in enumerate(items):
        given = directions[i] if directions is not None else None
        if isinstance(obj, Objective):
            key, d = obj.key, obj.direction
        elif isinstance(obj, Mapping):
            key, d = str(obj["key"]), obj.get("direction") or obj.get("mode")
        elif isinstance(obj, (tuple, list)) and len(obj) == 2:
            key, d = str(obj[0]), obj[1]
        else:
            key, d = str(obj), None
        d = given if given is not None else d
        out.append(Objective(key, _norm_dir(d, key) if d is not None else _direction_of(key)))
    keys = [o.key for o in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"objectives must be distinct, got {keys}")
    if not out:
        raise ValueError("no objectives given")
    return out


def _values(data: Any, objs: list[Objective]) -> np.ndarray:
    """The raw objective values as a float (n, m) array (NaN kept)."""
    if isinstance(data, pd.DataFrame):
        missing = [o.key for o in objs if o.key not in data.columns]
        if missing:
            raise KeyError(f"objective column(s) {missing} not in the data (columns: {list(data.columns)})")
        return data[[o.key for o in objs]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    arr = np.asarray(data, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(objs):
        raise ValueError(f"expected an (n, {len(objs)}) array, got shape {arr.shape}")
    return arr


def _prepare(data: Any, objectives, directions) -> tuple[np.ndarray, np.ndarray, list[Objective]]:
    """(Y to minimise, valid-row mask, objectives)."""
    columns = None
    if objectives is None:
        if isinstance(data, pd.DataFrame):
            columns = list(data.columns)
        else:
            columns = [f"f{j}" for j in range(np.asarray(data).reshape(len(data), -1).shape[1])]
    objs = resolve_objectives(objectives, directions, columns)
    x = _values(data, objs)
    y = x * np.array([o.sign for o in objs])
    valid = ~np.isnan(y).any(axis=1)
    return y, valid, objs


def _nd_mask(y: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Non-dominated mask of a NaN-free minimisation matrix (ties kept)."""
    n = len(y)
    keep = np.ones(n, dtype=bool)
    for s in range(0, n, chunk):
        block = y[s:s + chunk]                                   # (b, m): candidates
        le = (y[None, :, :] <= block[:, None, :]).all(axis=2)    # other j weakly better in all
        lt = (y[None, :, :] < block[:, None, :]).any(axis=2)     # ... and strictly better in one
        keep[s:s + chunk] = ~(le & lt).any(axis=1)
    return keep


def non_dominated(data: Any, objectives: Iterable[Any] | None = None,
                  directions: Sequence[Any] | str | None = None) -> np.ndarray:
    """Boolean mask (one per row): True = on the Pareto front. NaN rows are False; equal points all True."""
    y, valid, _ = _prepare(data, objectives, directions)
    out = np.zeros(len(y), dtype=bool)
    idx = np.flatnonzero(valid)
    if len(idx):
        out[idx] = _nd_mask(y[idx])
    return out


def pareto_ranks(data: Any, objectives: Iterable[Any] | None = None,
                 directions: Sequence[Any] | str | None = None) -> np.ndarray:
    """Integer rank per row: 1 = the front, 2 = the front of the rest, ...; 0 = excluded (NaN)."""
    y, valid, _ = _prepare(data, objectives, directions)
    ranks = np.zeros(len(y), dtype=int)
    remaining = np.flatnonzero(valid)
    r = 0
    while len(remaining):
        r += 1
        nd = _nd_mask(y[remaining])
        ranks[remaining[nd]] = r
        remaining = remaining[~nd]
    return ranks


# ---------------------------------------------------------------------------------------------------
# hypervolume
# ---------------------------------------------------------------------------------------------------
def reference_point(data: Any, objectives: Iterable[Any] | None = None,
                    directions: Sequence[Any] | str | None = None) -> np.ndarray:
    """Worst observed value of each objective over the valid (NaN-free) rows, in the metrics' units."""
    y, valid, objs = _prepare(data, objectives, directions)
    if not valid.any():
        raise ValueError("no valid (NaN-free) rows to take a reference point from")
    worst = y[valid].max(axis=0)
    return worst * np.array([o.sign for o in objs])


def _hv2(y: np.ndarray, ref: np.ndarray) -> float:
    """2-D hypervolume (minimisation) of points strictly inside the reference box."""
    order = np.lexsort((y[:, 1], y[:, 0]))
    hv, best1 = 0.0, ref[1]
    pts = y[order]
    # sweep in increasing f0; each point adds the rectangle between it and the next f0, below best f1 so far
    for i in range(len(pts)):
        if pts[i, 1] < best1:
            best1 = pts[i, 1]
        x_next = pts[i + 1, 0] if i + 1 < len(pts) else ref[0]
        hv += (x_next - pts[i, 0]) * (ref[1] - best1)
    return float(hv)


def _hv(y: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume (minimisation) by slicing along the last objective; 2-D base case."""
    if len(y) == 0:
        return 0.0
    m = y.shape[1]
    if m == 1:
        return float(ref[0] - y[:, 0].min())
    if m == 2:
        return _hv2(y, ref)
    y = y[_nd_mask(y)] if len(y) > 1 else y
    order = np.argsort(y[:, -1], kind="stable")
    y = y[order]
    levels = np.unique(y[:, -1])
    hv = 0.0
    for k, z in enumerate(levels):
        z_next = levels[k + 1] if k + 1 < len(levels) else ref[-1]
        below = y[y[:, -1] <= z][:, :-1]
        hv += (z_next - z) * _hv(below, ref[:-1])
    return float(hv)


def hypervolume(data: Any, objectives: Iterable[Any] | None = None,
                directions: Sequence[Any] | str | None = None,
                ref: Sequence[float] | Mapping[str, float] | None = None) -> float:
    """Exact hypervolume of the valid rows w.r.t. ``ref`` (default: ``reference_point`` of the same rows).

    ``ref`` is in the metrics' own units (a sequence in objective order, or a ``{key: value}`` mapping).
    0.0 when no row is valid or none is strictly better than the reference in every objective.
    """
    y, valid, objs = _prepare(data, objectives, directions)
    signs = np.array([o.sign for o in objs])
    y = y[valid]
    if ref is None:
        if not len(y):
            return 0.0
        r = y.max(axis=0)
    else:
        if isinstance(ref, Mapping):
            ref = [ref[o.key] for o in objs]
        r = np.asarray(ref, dtype=float).reshape(-1)
        if len(r) != len(objs):
            raise ValueError(f"reference point has {len(r)} values for {len(objs)} objectives")
        r = r * signs
    y = y[(y < r).all(axis=1)]
    if not len(y):
        return 0.0
    y = y[_nd_mask(y)]
    return _hv(np.unique(y, axis=0), r)


# ---------------------------------------------------------------------------------------------------
# knee point
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knee:
    index: Any            # the row's label (DataFrame index) or position (array)
    position: int         # its position in ``data``
    distance: float       # distance used (hyperplane distance, or distance to the ideal point)
    method: str           # "hyperplane" | "ideal" | "single" | "best"


def knee_point(data: Any, objectives: Iterable[Any] | None = None,
               directions: Sequence[Any] | str | None = None) -> Knee | None:
    """The knee of the Pareto front of ``data`` (None when no row is valid).

    Method: take the front (``non_dominated``), min-max normalise each objective over the front so that
    1 = best and 0 = worst (objectives constant on the front are dropped). The *extremes* are the front
    points best in each remaining objective (ties broken by the sum of the normalised values). The knee is
    the front point with the largest signed distance from the hyperplane through the extremes (the line
    through the two extremes in 2-D, the plane through the three in 3-D), measured towards the ideal point
    (1, ..., 1): the point that bulges out most, where trading one objective for another stops paying
    (``"hyperplane"``). In 2-D the extremes of a front always normalise to (1, 0) and (0, 1), so the line
    is u1 + u2 = 1. When one trial is extreme in several objectives the extremes span no hyperplane; the
    plane through the normalised axis intercepts, sum(u) = 1, is used instead (``"intercepts"``).
    Fallbacks: one front point -> it (``"single"``); one varying objective -> its best (``"best"``); no
    point strictly on the ideal side of the plane (a flat front) -> the front point nearest the ideal point
    (``"ideal"``). Ties go to the earliest row.
    """
    y, valid, _ = _prepare(data, objectives, directions)
    idx = np.flatnonzero(valid)
    if not len(idx):
        return None
    front = idx[_nd_mask(y[idx])]
    labels = data.index if isinstance(data, pd.DataFrame) else None

    def make(pos: int, dist: float, method: str) -> Knee:
        return Knee(labels[pos] if labels is not None else pos, int(pos), float(dist), method)

    if len(front) == 1:
        return make(front[0], 0.0, "single")
    f = -y[front]                                # maximise-oriented
    lo, hi = f.min(axis=0), f.max(axis=0)
    span = hi - lo
    vary = span > 0
    if not vary.any():
        return make(front[0], 0.0, "single")
    u = (f[:, vary] - lo[vary]) / span[vary]     # 1 = best
    m = u.shape[1]
    if m == 1:
        p = int(np.argmax(u[:, 0]))
        return make(front[p], 0.0, "best")
    ext = []
    for j in range(m):
        cand = np.flatnonzero(u[:, j] == u[:, j].max())
        ext.append(cand[np.argmax(u[cand].sum(axis=1))])
    e = u[ext]                                   # (m, m) extremes, one per row
    if len(set(ext)) == m and abs(np.linalg.det(e)) > 1e-12:
        nvec, method = np.linalg.solve(e, np.ones(m)), "hyperplane"   # n . x = 1 through the extremes
    else:                                        # a trial is extreme in several objectives: use the axis
        nvec, method = np.ones(m), "intercepts"  # intercepts, the plane sum(u) = 1 through (1,0,..), (0,1,..)
    norm = np.linalg.norm(nvec)
    side = 1.0 if nvec.sum() >= 1.0 else -1.0    # orientation towards the ideal point (1, ..., 1)
    dist = side * (u @ nvec - 1.0) / norm
    if dist.max() > 1e-12:
        p = int(np.argmax(dist))
        return make(front[p], float(dist[p]), method)
    di = np.linalg.norm(1.0 - u, axis=1)
    p = int(np.argmin(di))
    return make(front[p], float(di[p]), "ideal")


# ---------------------------------------------------------------------------------------------------
# constrained picks
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """``key op value`` with ``op`` in ``>=``/``<=`` (e.g. ``Threshold("acc/top1", ">=", 0.9)``)."""
    key: str
    op: str
    value: float

    def describe(self) -> str:
        return f"{self.key} {self.op} {self.value:.4g}"


@dataclass(frozen=True)
class NearBest:
    """``key`` within ``tol`` (absolute, in the metric's units) of the best ``key`` among reference rows.

    ``among`` filters the reference rows by column values (``{"regime": "standard"}``); None = all rows.
    "Best" follows the key's direction: for ``max``, rows need ``key >= best - tol``; for ``min``,
    ``key <= best + tol``. Accuracies are fractions in arx, so "within 1 point" is ``tol=0.01``.
    """
    key: str
    tol: float
    among: Mapping[str, Any] | None = None
    direction: str | None = None

    def describe(self) -> str:
        who = "trial" if not self.among else " ".join(f"{v}" for v in self.among.values()) + " trial"
        return f"{self.key} within {self.tol:g} of the best {who}"


@dataclass
class Pick:
    target: str
    direction: str
    constraints: list[str]                 # resolved bounds, e.g. "acc/top1 >= 0.902 (best standard trial 0.912 - 0.01)"
    index: Any = None                      # the chosen row's label, or None when nothing is feasible
    value: float = math.nan
    n_feasible: int = 0
    note: str = ""
    bounds: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.index is not None

    def describe(self) -> str:
        what = f"best {self.target} ({self.direction})"
        if self.constraints:
            what += " with " + " and ".join(self.constraints)
        return what


def _mask_of(data: pd.DataFrame, among: Mapping[str, Any] | None) -> np.ndarray:
    mask = np.ones(len(data), dtype=bool)
    for col, want in (among or {}).items():
        if col not in data.columns:
            return np.zeros(len(data), dtype=bool)
        vals = data[col]
        if isinstance(want, (list, tuple, set, frozenset)):
            mask &= vals.isin(list(want)).to_numpy()
        else:
            mask &= (vals == want).to_numpy()
    return mask


def constrained_pick(data: pd.DataFrame, target: str, constraints: Sequence[Threshold | NearBest] = (),
                     direction: str | None = None) -> Pick:
    """Best ``target`` among the rows of ``data`` satisfying every constraint (see ``Threshold``, ``NearBest``).

    Rows with NaN in the target or a constrained key are not candidates. ``NearBest`` bounds come from the
    rows matching its ``among`` filter (NaN values ignored). Ties go to the earliest row. Returns a ``Pick``
    whose ``index`` is None (with a ``note``) when no row is feasible or a reference set is empty.
    """
    tdir = resolve_objectives([target], [direction] if direction else None)[0].direction
    pick = Pick(target=target, direction=tdir, constraints=[])
    if target not in data.columns:
        pick.note = f"no {target} values"
        return pick
    vals = pd.to_numeric(data[target], errors="coerce").to_numpy(dtype=float)
    ok = ~np.isnan(vals)
    for c in constraints:
        if c.key not in data.columns:
            pick.note = f"no {c.key} values"
            return pick
        col = pd.to_numeric(data[c.key], errors="coerce").to_numpy(dtype=float)
        ok &= ~np.isnan(col)
        if isinstance(c, Threshold):
            if c.op not in (">=", "<="):
                raise ValueError(f"threshold op must be '>=' or '<=', got {c.op!r}")
            op, bound, why = c.op, float(c.value), ""
        elif isinstance(c, NearBest):
            cdir = resolve_objectives([c.key], [c.direction] if c.direction else None)[0].direction
            ref = col[_mask_of(data, c.among) & ~np.isnan(col)]
            who = "trial" if not c.among else ", ".join(f"{v}" for v in c.among.values()) + " trial"
            if not len(ref):
                pick.note = f"no {who} with a {c.key} value to compare with"
                pick.constraints.append(c.describe())
                return pick
            best = ref.max() if cdir == "max" else ref.min()
            op = ">=" if cdir == "max" else "<="
            bound = best - c.tol if cdir == "max" else best + c.tol
            why = f" (best {who} {best:.4g} {'-' if cdir == 'max' else '+'} {c.tol:g})"
        else:
            raise TypeError(f"unknown constraint {c!r}")
        with np.errstate(invalid="ignore"):
            ok &= (col >= bound - 1e-12) if op == ">=" else (col <= bound + 1e-12)
        pick.constraints.append(f"{c.key} {op} {bound:.4g}{why}")
        pick.bounds[c.key] = (op, bound)
    cand = np.flatnonzero(ok)
    pick.n_feasible = int(len(cand))
    if not len(cand):
        pick.note = "no trial satisfies the constraints"
        return pick
    best_pos = cand[np.argmax(vals[cand])] if tdir == "max" else cand[np.argmin(vals[cand])]
    pick.index = data.index[best_pos]
    pick.value = float(vals[best_pos])
    return pick
