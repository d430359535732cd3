"""analysis.pareto on hand-made point sets, against Optuna's own Pareto front and Monte-Carlo hypervolumes."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import pareto as P

nan = math.nan


# ---------------------------------------------------------------------------------------------------
# non-dominated sets
# ---------------------------------------------------------------------------------------------------
def test_ties_are_all_non_dominated():
    pts = np.array([[1, 1], [1, 1], [0, 2], [0, 0], [0, 2]])
    assert P.non_dominated(pts, None, "max").tolist() == [True, True, True, False, True]


def test_weakly_dominated_point_is_dominated():
    # equal in one objective, worse in the other -> dominated
    pts = np.array([[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]])
    assert P.non_dominated(pts, None, ["max", "max"]).tolist() == [True, False, False]


def test_nan_rows_are_excluded_and_dominate_nothing():
    df = pd.DataFrame({"acc/top1": [0.9, nan, 0.8, 0.95], "robust/pgd": [0.2, 0.99, 0.1, nan],
                       "explain/box_iou": [0.1, 0.2, 0.3, 0.4]})
    # row 1 would dominate row 0 in (acc, pgd) if its NaN counted as anything
    assert P.non_dominated(df, ["acc/top1", "robust/pgd"]).tolist() == [True, False, False, False]
    assert P.pareto_ranks(df, ["acc/top1", "robust/pgd"]).tolist() == [1, 0, 2, 0]
    # NaN only matters in the objectives used
    assert P.non_dominated(df, ["acc/top1", "explain/box_iou"]).tolist() == [False, False, False, True]


def test_mixed_directions_and_key_table_directions():
    # explain/cam_l1 is minimised (trainables/metrics/keys.py): lower is better
    df = pd.DataFrame({"acc/top1": [0.9, 0.9, 0.8, 0.7], "explain/cam_l1": [0.5, 0.3, 0.2, 0.25]})
    assert P.resolve_objectives(["acc/top1", "explain/cam_l1"])[1].direction == "min"
    assert P.non_dominated(df, ["acc/top1", "explain/cam_l1"]).tolist() == [False, True, True, False]
    # the same with explicit (optuna-style) directions and with {"key", "direction"} dicts
    assert P.non_dominated(df, ["acc/top1", "explain/cam_l1"], ["maximize", "minimize"]).tolist() == \
        [False, True, True, False]
    objs = [{"key": "acc/top1", "direction": "max"}, {"key": "explain/cam_l1", "direction": "max"}]
    assert P.non_dominated(df, objs).tolist() == [True, False, False, False]


def test_unknown_key_needs_a_direction():
    df = pd.DataFrame({"my/score": [1.0, 2.0]})
    with pytest.raises(ValueError, match="direction"):
        P.non_dominated(df, ["my/score"])
    assert P.non_dominated(df, ["my/score"], ["min"]).tolist() == [True, False]


def test_ranks_are_successive_fronts():
    pts = np.array([[3, 1], [2, 2], [1, 3],      # front 1
                    [2, 1], [1, 2],              # front 2
                    [1, 1], [1, 1],              # front 3 (tied)
                    [0, 0]])                     # front 4
    assert P.pareto_ranks(pts, None, "max").tolist() == [1, 1, 1, 2, 2, 3, 3, 4]
    assert P.pareto_ranks(-pts, None, "min").tolist() == [1, 1, 1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize("directions", [["maximize", "maximize"], ["maximize", "minimize"],
                                        ["minimize", "maximize", "maximize"], ["minimize", "minimize", "maximize"]])
def test_front_equals_optuna_best_trials(directions):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(len(directions) * 10 + directions.count("minimize"))
    m = len(directions)
    raw = rng.random((60, m))
    raw = raw / np.linalg.norm(raw, axis=1, keepdims=True) * rng.uniform(0.7, 1.0, (60, 1))
    raw = np.round(raw, 1)                             # coarse grid -> ties and duplicates
    vals = np.where(np.array(directions) == "maximize", raw, 1.0 - raw)
    vals[17, 0] = nan                                  # NaN rows: FAIL trials in Optuna, excluded here
    vals[33, m - 1] = nan
    first = np.flatnonzero(P.non_dominated(vals, None, directions))[0]
    vals = np.vstack([vals, vals[first]])              # an exact copy of a front point: both stay on the front
    study = optuna.create_study(directions=directions)
    for v in vals:
        if np.isnan(v).any():
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={}))
        else:
            study.add_trial(optuna.trial.create_trial(values=v.tolist(), params={}, distributions={}))
    ours = np.flatnonzero(P.non_dominated(vals, None, directions)).tolist()
    theirs = sorted(t.number for t in study.best_trials)
    assert ours == theirs
    assert len(ours) >= 3 and first in ours and len(vals) - 1 in ours


# ---------------------------------------------------------------------------------------------------
# hypervolume
# ---------------------------------------------------------------------------------------------------
def _mc_hypervolume(points: np.ndarray, signs: np.ndarray, ref: np.ndarray, n: int, seed: int) -> float:
    """Brute force: sample the box between the best values and the reference, count dominated samples."""
    y = points * signs                    # minimise
    r = ref * signs
    lo = y.min(axis=0)
    rng = np.random.default_rng(seed)
    cols = [lo[j] + rng.random(n) * (r[j] - lo[j]) for j in range(y.shape[1])]   # one sample array per axis
    dominated = np.zeros(n, dtype=bool)
    for p in y:
        hit = cols[0] >= p[0]
        for j in range(1, y.shape[1]):
            hit &= cols[j] >= p[j]
        dominated |= hit
    return float(dominated.mean() * np.prod(r - lo))


def test_hypervolume_hand_computed():
    # hand-computed areas / volumes; the library sums a few float64 products, so approx's default rel 1e-6
    # (and allclose's rtol 1e-5) are far above its rounding (~1e-16) and far below any wrong term (>= 0.25)
    # max-max, ref (0, 0): union of [0,3]x[0,1], [0,2]x[0,2], [0,1]x[0,3] = 3 + 2 + 1 = 6
    pts = np.array([[3, 1], [2, 2], [1, 3], [1, 1]])
    assert P.hypervolume(pts, None, "max", ref=[0, 0]) == pytest.approx(6.0)
    # default reference = worst observed (1, 1): [1,3]x[1,1] adds nothing; 1x1 + ... = (2-1)*(2-1) + ...
    assert np.allclose(P.reference_point(pts, None, "max"), [1, 1])
    assert P.hypervolume(pts, None, "max") == pytest.approx(1.0)
    # a single point against itself has no volume; one objective: best - worst
    assert P.hypervolume(pts[:1], None, "max") == 0.0
    assert P.hypervolume(np.array([[1.0], [4.0], [2.0]]), None, "min") == pytest.approx(3.0)
    # 3-D cube corners: ref 0, points (1,1,1) and (2,0.5,0.5): 1 + 2*0.25 - 1*0.25 = 1.25
    assert P.hypervolume(np.array([[1, 1, 1], [2, .5, .5]]), None, "max", ref=[0, 0, 0]) == pytest.approx(1.25)
    # ties and NaN do not change it
    tied = np.vstack([pts, pts[:2], [[nan, 9]]])
    assert P.hypervolume(tied, None, "max", ref=[0, 0]) == pytest.approx(6.0)


@pytest.mark.parametrize("m,directions", [(2, ["max", "min"]), (3, ["max", "max", "min"]), (3, ["min", "min", "min"])])
def test_hypervolume_matches_monte_carlo(m, directions):
    rng = np.random.default_rng(m)
    raw = rng.random((40, m))
    # put many points near a concave front so the front has several members
    raw = raw / np.linalg.norm(raw, axis=1, keepdims=True) * rng.uniform(0.8, 1.0, (40, 1))
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    pts = np.where(signs < 0, raw, 1.0 - raw)       # "max" columns as they are, "min" columns mirrored
    exact = P.hypervolume(pts, None, directions)
    ref = P.reference_point(pts, None, directions)
    mc = _mc_hypervolume(pts, signs, ref, n=400_000, seed=7)
    assert exact > 0
    # statistical: 400k uniform samples, dominated fraction p ~ 0.5-0.76 -> relative standard error
    # sqrt((1-p) / (p n)) <= 1.7e-3, so 1 % is ~6 standard errors (measured 3e-4..2.9e-3 with these fixed seeds;
    # numpy float64, the same on every ISA)
    assert abs(exact - mc) / exact < 0.01, (exact, mc)
    # a given reference point (mapping form) beyond the worst values
    far = {f"f{j}": ref[j] + signs[j] * 0.1 for j in range(m)}    # 0.1 worse than the worst observed
    exact_far = P.hypervolume(pd.DataFrame(pts, columns=list(far)), list(far), directions, ref=far)
    mc_far = _mc_hypervolume(pts, signs, np.array(list(far.values())), n=400_000, seed=8)
    assert exact_far > exact
    assert abs(exact_far - mc_far) / exact_far < 0.01, (exact_far, mc_far)


def test_hypervolume_of_subsets_with_a_common_reference():
    df = pd.DataFrame({"acc/top1": [0.9, 0.8, 0.7, 0.6], "robust/pgd": [0.1, 0.3, 0.2, 0.5],
                       "regime": ["standard", "standard", "trades", "trades"]})
    objs = ["acc/top1", "robust/pgd"]
    ref = P.reference_point(df, objs)
    per = {r: P.hypervolume(g, objs, ref=ref) for r, g in df.groupby("regime")}
    # hand-computed (float64 sums of two products): approx / allclose defaults are ~1e10 x the rounding
    assert np.allclose(ref, [0.6, 0.1])
    assert per["standard"] == pytest.approx(0.3 * 0.0 + 0.2 * 0.2)        # (0.9,0.1) adds 0; (0.8,0.3): 0.2*0.2
    assert per["trades"] == pytest.approx(0.1 * 0.1)                       # (0.7,0.2); (0.6,0.5) adds 0
    assert P.hypervolume(df, objs, ref=ref) >= max(per.values())


# ---------------------------------------------------------------------------------------------------
# knee
# ---------------------------------------------------------------------------------------------------
def test_knee_2d_hand_made_front():
    # front (1,0), (0.8,0.8), (0.45,0.9), (0,1) + a dominated point; the bulge is (0.8, 0.8)
    df = pd.DataFrame({"a": [1.0, 0.45, 0.8, 0.0, 0.5], "b": [0.0, 0.9, 0.8, 1.0, 0.5]}, index=list("vwxyz"))
    k = P.knee_point(df, ["a", "b"], "max")
    assert (k.index, k.method) == ("x", "hyperplane")
    # the distance in closed form (float64 on both sides): approx's rel 1e-6 >> rounding, << any other point's
    assert k.distance == pytest.approx((0.8 + 0.8 - 1) / math.sqrt(2))
    # mixed directions: mirror b and minimise it -> the same knee
    df2 = df.assign(b=1 - df["b"])
    assert P.knee_point(df2, ["a", "b"], ["max", "min"]).index == "x"


def test_knee_3d_hand_made_front():
    pts = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [0.3, 0.3, 0.3], [0.6, 0.3, 0.2]])
    k = P.knee_point(pts, None, "max")
    assert k.position == 3 and k.method == "hyperplane"
    assert k.distance == pytest.approx((1.5 - 1) / math.sqrt(3))  # closed form, float64 as above


def test_knee_when_one_trial_is_extreme_in_two_objectives():
    # A is best in objectives 0 and 1, B in 2: the extremes span no plane -> the plane sum(u) = 1
    pts = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.45, 0.8], [0.2, 0.2, 0.2]])
    k = P.knee_point(pts, None, "max")
    assert k.method == "intercepts" and k.position == 0
    assert k.distance == pytest.approx((2.0 - 1.0) / math.sqrt(3))  # closed form, float64 as above


def test_knee_degenerate_cases():
    assert P.knee_point(np.array([[nan, 1.0]]), None, "max") is None
    assert P.knee_point(np.array([[1.0, 2.0], [0.0, 0.0]]), None, "max").method == "single"
    assert P.knee_point(np.array([[3.0], [5.0], [4.0]]), None, "max").position == 1
    # a straight front: nothing bulges -> nearest the ideal point
    k = P.knee_point(np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]), None, "max")
    assert k.method == "ideal" and k.position == 1


# ---------------------------------------------------------------------------------------------------
# constrained picks
# ---------------------------------------------------------------------------------------------------
def _trials():
    return pd.DataFrame({
        "regime": ["standard", "standard", "fgsm_at", "fgsm_at", "trades", "trades"],
        "acc/top1": [0.910, 0.900, 0.905, 0.899, 0.950, nan],
        "explain/box_iou": [0.30, 0.35, 0.50, 0.90, 0.40, 0.99],
        "explain/cam_l1": [0.4, 0.3, 0.2, 0.1, 0.5, 0.05],
    }, index=[f"t{i}" for i in range(6)])


def test_best_explain_within_one_point_of_the_best_standard_trial():
    df = _trials()
    pk = P.constrained_pick(df, "explain/box_iou", [P.NearBest("acc/top1", 0.01, among={"regime": "standard"})])
    # best standard acc = 0.91 -> acc >= 0.90: t0, t1, t2, t4 (t3 0.899 is out, t5 has no acc)
    # approx: the bound is 0.91 - 0.01 in float64 (not exactly 0.90); rel 1e-6 is far inside the 0.001 gaps
    assert pk.found and pk.index == "t2" and pk.value == pytest.approx(0.5) and pk.n_feasible == 4
    assert pk.bounds["acc/top1"][0] == ">=" and pk.bounds["acc/top1"][1] == pytest.approx(0.90)
    assert "best standard trial 0.91" in pk.constraints[0]
    # relative to the best trial of any regime (0.95): only t4
    pk = P.constrained_pick(df, "explain/box_iou", [P.NearBest("acc/top1", 0.01)])
    assert pk.index == "t4"


def test_picks_with_thresholds_min_targets_and_infeasible():
    df = _trials()
    pk = P.constrained_pick(df, "explain/cam_l1", [P.Threshold("acc/top1", ">=", 0.9)])
    assert pk.index == "t2" and pk.direction == "min"
    pk = P.constrained_pick(df, "explain/box_iou", [P.Threshold("acc/top1", ">=", 0.99)])
    assert not pk.found and pk.n_feasible == 0 and pk.note
    pk = P.constrained_pick(df, "explain/box_iou", [P.NearBest("acc/top1", 0.01, among={"regime": "nope"})])
    assert not pk.found and "no nope trial" in pk.note
    assert P.constrained_pick(df, "explain/box_iou").index == "t5"    # no constraint: NaN acc is irrelevant
