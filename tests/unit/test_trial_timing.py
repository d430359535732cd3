"""Phase arithmetic of trial stamps (trainables/timing.py) and the overhead bench's row summary."""
import math

from analysis.bench.overhead import summarize
from trainables.timing import OVERHEAD_PHASES, PHASES, overhead_seconds, phases

from report_store import TRIALS

TRIALS_DONE = [t for t in TRIALS if isinstance(t[3], dict)]


def _stamps(t0: float, gaps: list[float]) -> dict:
    names = [PHASES[0][1]] + [b for _, _, b in PHASES]
    t, out = t0, {}
    for name, gap in zip(names, [0.0] + gaps):
        t += gap
        out[f"timing/{name}"] = t
    return out


def test_phases_are_consecutive_and_sum_to_wall():
    gaps = [0.5, 3.0, 0.75, 1.0, 0.25, 10.0, 0.5, 1.5, 0.25]
    s = _stamps(1000.0, gaps) | {"timing/first_step": 1000.0 + 0.5 + 3.0 + 0.75 + 1.0 + 0.25 + 0.4}
    p = phases(s)
    assert [p[name] for name, _, _ in PHASES] == gaps
    assert math.isclose(p["wall"], sum(gaps))
    assert math.isclose(p["overhead"], sum(p[k] for k in OVERHEAD_PHASES))
    assert math.isclose(p["overhead_share"], (sum(gaps) - 10.0) / sum(gaps))
    assert math.isclose(p["first_step"], 0.4)
    # the driver's value before the close: wall up to `now` minus compute
    assert math.isclose(overhead_seconds(s, now=s["timing/fit_end"]), sum(gaps[:-1]) - 10.0)


def test_missing_stamps_give_no_overhead():
    s = _stamps(0.0, [1.0] * 9)
    del s["timing/eval_end"]
    assert "overhead" not in phases(s) and overhead_seconds(s) is None
    row = summarize(1, [s], 10.0)
    assert row["ours_s"] is None and "error" in row


def test_summary_row_takes_medians():
    trials = [_stamps(0.0, [1.0, 2.0, 0.0, 1.0, 0.0, 5.0, 0.0, 1.0, 0.0]),
              _stamps(50.0, [1.0, 4.0, 0.0, 1.0, 0.0, 5.0, 0.0, 1.0, 0.0]),
              _stamps(90.0, [1.0, 9.0, 0.0, 1.0, 0.0, 5.0, 0.0, 1.0, 0.0])]
    row = summarize(2, trials, 60.0)
    assert row["bench"] == "overhead/2worker" and row["trials"] == 3
    assert row["ours_s"] == 7.0 and row["workers_ready_s"] == 4.0 and row["compute_s"] == 5.0
    assert row["met"] is True and row["sweep_wall_per_trial_s"] == 20.0
    assert math.isclose(row["overhead_share"], (5 + 7 + 12) / (10 + 12 + 17))
    assert row["between_trials_s"] == 34.0  # trials end at 10 and 62, the next ones start at 50 and 90


def test_between_trials_needs_two_trials():
    from analysis.bench.overhead import between_trials

    assert between_trials([_stamps(0.0, [1.0] * 9)]) is None
    assert between_trials([_stamps(30.0, [1.0] * 9), _stamps(0.0, [1.0] * 9)]) == 21.0  # sorted by start


def test_overhead_line_skips_missing_values():
    from trainables.timing import overhead_line

    assert overhead_line([None, float("nan")], [10.0, 10.0]) is None
    line = overhead_line([2.0, 6.0, None], [10.0, 10.0, 30.0])
    assert line.startswith("trial overhead: 40% ") and "median 4.0 s per trial, 2 trial(s)" in line


def test_report_shows_the_overhead_share(tmp_path):
    from analysis.report import write_report
    from report_store import build_store

    cost = [{"cost/overhead_seconds": 3.0, "cost/trial_wall_seconds": 12.0},
            {"cost/overhead_seconds": 5.0, "cost/trial_wall_seconds": 20.0}]
    trials = [(t, r, p, m | c, False) for (t, r, p, m, _), c in zip(TRIALS_DONE, cost)]
    uri, _, _ = build_store(tmp_path, "sweep_overhead", trials)
    text = write_report(None, uri, tmp_path / "out", png=False, log_to_mlflow=False).read_text()
    assert "Trial overhead: 25% of the summed trial wall time" in text and "median 4.0 s per trial" in text
    uri2, _, _ = build_store(tmp_path / "b", "sweep_plain", TRIALS_DONE[:2])
    assert "Trial overhead" not in write_report(None, uri2, tmp_path / "out2", png=False, log_to_mlflow=False).read_text()


def test_summary_overhead_line_from_mlflow_and_none_when_unreachable(tmp_path):
    from mlflow.tracking import MlflowClient

    from report_store import fresh_store
    from sweeps.summary import _overhead

    uri = fresh_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("s")
    parent = client.create_run(exp).info.run_id
    for o, w in ((1.0, 4.0), (3.0, 4.0)):
        child = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_metric(child, "cost/overhead_seconds", o)
        client.log_metric(child, "cost/trial_wall_seconds", w)
    assert _overhead(uri, parent).startswith("trial overhead: 50% ")
    assert _overhead("http://127.0.0.1:9", parent) is None  # nothing listens: no line, no exception
