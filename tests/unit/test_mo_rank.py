"""The multi-objective successive-halving rank (sweeps/mo_rank.py): set-based, directions, constraints, NaN,
and equal to a brute-force reference on small sets."""
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.mo_rank import Record, keep, rank_order

MODES = ("max", "min")


def _brute_dominates(a, b, modes):
    better = [(x > y) if m == "max" else (x < y) for x, y, m in zip(a.values, b.values, modes)]
    worse = [(x < y) if m == "max" else (x > y) for x, y, m in zip(a.values, b.values, modes)]
    return not any(worse) and any(better)


def _brute_front(r, feasible, modes, memo):
    """Front index by its recursive definition: 0 if nothing dominates r, else 1 + the deepest dominator's."""
    if r.trial_id not in memo:
        doms = [o for o in feasible if _brute_dominates(o, r, modes)]
        memo[r.trial_id] = 1 + max(_brute_front(o, feasible, modes, memo) for o in doms) if doms else 0
    return memo[r.trial_id]


def _brute_crowding(r, front, modes):
    """Neighbours found by search (no sorting): the nearest lower and upper point in (value, id) order."""
    total = 0.0
    for k in range(len(modes)):
        key = lambda o: (o.values[k] * (-1 if modes[k] == "max" else 1), o.trial_id)  # noqa: E731
        lower = [o for o in front if key(o) < key(r)]
        upper = [o for o in front if key(o) > key(r)]
        if not lower or not upper:
            return math.inf
        span = max(key(o)[0] for o in front) - min(key(o)[0] for o in front)
        if span > 0 and len(front) >= 3:
            total += (key(min(upper, key=key))[0] - key(max(lower, key=key))[0]) / span
    return total


def _brute_keep(records, tid, eta, modes):
    if len(records) < eta:
        return True
    feasible = [r for r in records if not r.is_nan and r.violation <= 0]
    memo = {}

    def sort_key(r):
        if r.is_nan:
            return (2, 0, 0, 0, r.trial_id)
        if r.violation > 0:
            return (1, r.violation, 0, 0, r.trial_id)
        f = _brute_front(r, feasible, modes, memo)
        front = [o for o in feasible if _brute_front(o, feasible, modes, memo) == f]
        return (0, 0, f, -_brute_crowding(r, front, modes), r.trial_id)

    better = sum(sort_key(o) < sort_key(records[[r.trial_id for r in records].index(tid)]) for o in records)
    return better < len(records) // eta


_value = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(-10, 10), st.just(math.nan))


@st.composite
def record_sets(draw, max_size=9, nan=True, constraints=True):
    n = draw(st.integers(1, max_size))
    values = _value if nan else st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(-10, 10))
    out = []
    for i in range(n):
        v = tuple(draw(values) for _ in MODES)
        viol = draw(st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.5, math.inf])) if constraints else 0.0
        out.append(Record(f"t{i:02d}", v, viol))
    return out


@settings(max_examples=400, deadline=None)
@given(record_sets(), st.integers(2, 4), st.randoms(use_true_random=False))
def test_permuting_the_records_never_changes_a_decision(records, eta, rnd):
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert rank_order(records, MODES) == rank_order(shuffled, MODES)
    for r in records:
        assert keep(records, r.trial_id, eta, MODES) == keep(shuffled, r.trial_id, eta, MODES)


@settings(max_examples=400, deadline=None)
@given(record_sets(max_size=7), st.integers(2, 4))
def test_decisions_equal_the_brute_force_reference(records, eta):
    for r in records:
        assert keep(records, r.trial_id, eta, MODES) == _brute_keep(records, r.trial_id, eta, MODES), r


@settings(max_examples=300, deadline=None)
@given(record_sets(nan=False), st.integers(2, 5), st.floats(0.01, 5))
def test_a_trial_that_dominates_every_recorded_one_continues(records, eta, margin):
    best = Record("zz", (max(r.values[0] for r in records) + margin, min(r.values[1] for r in records) - margin))
    assert rank_order(records + [best], MODES)[0] == "zz"
    assert keep(records + [best], "zz", eta, MODES)


def test_each_objective_direction_is_respected():
    recs = [Record("a", (0.9, 0.1)), Record("b", (0.5, 0.5)), Record("c", (0.1, 0.9))]
    assert rank_order(recs, ("max", "min"))[-1] == "c" and rank_order(recs, ("max", "min"))[0] == "a"
    assert rank_order(recs, ("min", "max"))[0] == "c" and rank_order(recs, ("min", "max"))[-1] == "a"
    # (max, max): one front of three; the ends (infinite crowding) first, by id, then the middle
    assert rank_order(recs, ("max", "max")) == ["a", "c", "b"]


def test_constraint_violators_rank_after_every_feasible_trial_and_nan_last():
    recs = [Record("best_but_infeasible", (1.0, 0.0), 0.2), Record("worse_infeasible", (1.0, 0.0), 0.5),
            Record("nan", (math.nan, 0.0)), Record("bad_feasible", (0.0, 1.0)), Record("ok", (0.5, 0.5))]
    assert rank_order(recs, MODES) == ["ok", "bad_feasible", "best_but_infeasible", "worse_infeasible", "nan"]
    assert not keep(recs, "best_but_infeasible", 2, MODES) and keep(recs, "ok", 2, MODES)
    assert keep(recs, "bad_feasible", 2, MODES)  # 5 // 2 = 2 continue


def test_fewer_than_eta_recorded_continue_whatever_they_are():
    recs = [Record("a", (math.nan, math.nan)), Record("b", (1.0, 0.0))]
    assert keep(recs, "a", 3, MODES) and keep(recs, "b", 3, MODES)
    assert not keep(recs, "a", 2, MODES) and keep(recs, "b", 2, MODES)


def test_equal_points_are_ordered_by_trial_id():
    recs = [Record(t, (0.5, 0.5)) for t in ("c", "a", "b")]
    assert rank_order(recs, MODES) == ["a", "c", "b"]  # ends of the (value, id) order first, by id
    random.Random(0).shuffle(recs)
    assert rank_order(recs, MODES) == ["a", "c", "b"]
