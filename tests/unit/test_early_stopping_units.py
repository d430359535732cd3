"""The ``early_stopping:`` spec block, the expected budget share, and the scheduler's decisions and rung table
(sweeps/early_stopping.py, sweeps/scheduler.py, sweeps/rung_table.py)."""
import json
import math
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from sweeps.early_stopping import budget_share
from sweeps.scheduler import MultiObjectiveHalving
from sweeps.spec import SweepSpec
from trainables.errors import ConfigError

BASE = {"name": "es", "base": {"optim": {"epochs": 8}, "evaluation": {"groups": ["accuracy"]}},
        "regimes": {"standard": {}},
        "objectives": [{"key": "acc/top1", "direction": "max"}, {"key": "acc/top5", "direction": "max"}],
        "constraints": ["acc/top1 >= 0.3"]}


def spec(**es):
    return SweepSpec.model_validate({**BASE, "early_stopping": es})


def test_rungs_explicit_or_geometric_and_the_trial_config_carries_them():
    assert spec(rungs=[2, 4]).trial_base().rungs.epochs == (2, 4)
    s = spec(min_epochs=1, reduction_factor=2, images=32)
    assert s.trial_base().rungs.epochs == (1, 2, 4) and s.trial_base().rungs.images == 32
    assert s.trial_base().rungs.keys == ("acc/top1", "acc/top5")
    assert spec().trial_base().rungs.epochs == (1, 3)  # defaults: min_epochs 1, eta 3
    assert SweepSpec.model_validate(BASE).trial_base().rungs.epochs == ()  # absent: no rungs


@pytest.mark.parametrize("es, words", [
    ({"rungs": [2, 8]}, "below base.optim.epochs"),
    ({"rungs": [4, 2]}, "strictly increasing"),
    ({"reduction_factor": 1}, "reduction_factor"),
    ({"min_epochs": 8}, "leaves no rung"),
    ({"rungs": [2], "min_epochs": 1}, "not both"),
    ({"keys": ["robust/pgd"]}, "not an objective or constraint key"),
    ({"images": 0}, "images"),
    ({"bogus": 1}, "bogus"),
])
def test_invalid_blocks_are_one_line_errors_naming_the_field(es, words, tmp_path):
    import yaml

    from sweeps.spec import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "early_stopping": es}))
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert words in str(e.value) and "early_stopping" in str(e.value) and "\n" not in str(e.value)


def test_budget_share():
    # Python float64 fractions vs the same fractions: approx's default rel 1e-6 >> rounding
    assert budget_share((2, 4), 8, 2) == pytest.approx((2 + 2 / 2 + 4 / 4) / 8)
    assert budget_share((1,), 1 + 1, 3) == pytest.approx((1 + 1 / 3) / 2)


def _trial(tid, epochs=8):
    return SimpleNamespace(trial_id=tid, config={"trial": {"optim": {"epochs": epochs}}})


def _sched(path=None, constraints=()):
    return MultiObjectiveHalving(["acc/top1", "acc/top5"], ["max", "max"], list(constraints), 2, path)


def _res(rung, top1, top5=0.5, s=1.0):
    return {"rung": rung, "rung/acc/top1": top1, "rung/acc/top5": top5, "rung/device_seconds": s}


def test_asynchronous_decisions_and_the_rung_table_survive_a_restart(tmp_path):
    path = tmp_path / "rungs" / "es.json"
    s = _sched(path)
    C, S = TrialScheduler.CONTINUE, TrialScheduler.STOP
    assert s.on_trial_result(None, _trial("a"), {"epoch": 0}) == C  # not a rung result
    assert s.on_trial_result(None, _trial("a"), _res(2, 0.5)) == C  # fewer than eta recorded
    assert s.on_trial_result(None, _trial("b"), _res(2, 0.4)) == S  # dominated by a: 2 // 2 = 1 continues
    assert s.on_trial_result(None, _trial("c"), _res(2, 0.9)) == C  # dominates both
    table = json.loads(path.read_text())
    assert table["pruned"] == {"b": {"rung": 2, "device_seconds": 1.0, "saved_device_seconds": 3.0}}
    # a driver restart: the scheduler is unpickled without its table and reads the file
    import pickle

    s2 = pickle.loads(pickle.dumps(s))
    assert s2._table is None
    assert s2.on_trial_result(None, _trial("b"), _res(2, 0.99, 1.0)) == S  # no resurrection, same decision
    assert s2.on_trial_result(None, _trial("a"), _res(2, 0.5)) == C
    assert s2.on_trial_result(None, _trial("d"), _res(2, 0.45)) == S  # same as the uninterrupted s
    assert s.on_trial_result(None, _trial("d"), _res(2, 0.45)) == S


def test_constraints_on_rung_keys_and_nan():
    from sweeps.spec import Constraint

    s = _sched(constraints=[Constraint(key="acc/top1", op=">=", value=0.3)])
    assert s.record_of("x", _res(1, 0.1)).violation == pytest.approx(0.2)  # 0.3 - 0.1 in float64: rel 1e-6
    assert s.record_of("x", _res(1, 0.5)).violation == 0.0
    assert math.isinf(s.record_of("x", {"rung": 1}).violation)
    assert s.record_of("x", {"rung": 1}).is_nan
    s.on_trial_result(None, _trial("ok"), _res(1, 0.31, 0.1))
    assert s.on_trial_result(None, _trial("bad"), _res(1, 0.29, 1.0)) == TrialScheduler.STOP


def test_the_report_lists_pruned_trials_apart_and_never_on_a_front():
    import pandas as pd

    from analysis.report import analyse, render_html

    df = pd.DataFrame([
        {"trial_id": "a", "regime": "standard", "status": "completed", "acc/top1": 0.9, "acc/top5": 1.0},
        {"trial_id": "b", "regime": "standard", "status": "completed", "acc/top1": 0.8, "acc/top5": 0.9},
        {"trial_id": "p", "regime": "fgsm_at", "status": "pruned", "rung": 2, "device_seconds_saved": 12.0},
        {"trial_id": "f", "regime": "fgsm_at", "status": "failed", "failure_reason": "NaN loss"}])
    a = analyse(df, [("acc/top1", "max"), ("acc/top5", "max")])
    assert list(a.pruned["trial_id"]) == ["p"] and list(a.failed["trial_id"]) == ["f"]
    assert "p" not in set(a.front["trial_id"])
    row = a.regime_summary.set_index("regime").loc["fgsm_at"]
    assert (row["pruned"], row["failed"], row["completed"]) == (1, 1, 0)
    html = render_html(a, {"sweep": "s"})
    assert "<b>1</b> pruned" in html and "Pruned trials" in html and "~12 device-seconds saved" in html


def test_front_plots_draw_pruned_trials_faded_at_their_last_rung(tmp_path):
    import pandas as pd

    from analysis import plots
    from analysis.report import analyse
    from analysis.sections import Context, pareto_fronts

    df = pd.DataFrame([
        {"trial_id": "a", "regime": "standard", "status": "completed", "acc/top1": 0.9, "acc/top5": 0.7},
        {"trial_id": "b", "regime": "standard", "status": "completed", "acc/top1": 0.8, "acc/top5": 0.95},
        {"trial_id": "p", "regime": "fgsm_at", "status": "pruned", "rung": 2, "rung/acc/top1": 0.31,
         "rung/acc/top5": 0.52},
        {"trial_id": "q", "regime": "fgsm_at", "status": "pruned", "rung": 2, "rung/acc/top1": float("nan"),
         "rung/acc/top5": 0.5}])
    a = analyse(df, [("acc/top1", "max"), ("acc/top5", "max")])
    infos = pareto_fronts(Context(a)).figures
    assert len(infos) == 1
    traces = {t.name: t for t in plots.to_plotly(infos[0]).data}
    pruned = traces["pruned (last rung)"]   # q has no finite rung value for acc/top1: not drawn
    assert list(pruned.x) == [0.31] and list(pruned.y) == [0.52] and pruned.marker.opacity < 1
    front = traces["front"]                 # the front line passes through the completed trials only
    assert 0.31 not in set(front.x) and {0.9, 0.8} <= set(front.x)
    png = plots.to_png(infos[0], tmp_path)
    assert png.name.startswith("front_") and png.read_bytes()[:4] == b"\x89PNG"
