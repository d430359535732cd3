"""Seeds of one setting aggregated in the report (analysis/seeds.py, issue #19.2): hand-computed means, sample
standard deviations and n; the front over setting means; error bars in the figures; per-trial view kept."""
from __future__ import annotations

import math

import pandas as pd
import pytest

ROWS = [  # (trial, regime, eps, seed, acc, robust)
    ("a0", "standard", None, 0, 0.8, 0.1), ("a1", "standard", None, 1, 0.6, 0.3),
    ("b0", "fgsm_at", 0.03, 0, 0.5, 0.5), ("b1", "fgsm_at", 0.03, 1, 0.7, 0.3),
    ("c0", "fgsm_at", 0.01, 0, 0.59, 0.38),
]
OBJS = [("acc/top1", "max"), ("robust/pgd", "max")]


def _frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": t, "regime": r, "status": "completed", "params.regime.params.eps": e,
                          "params.seed": s, "params.optim.lr": 0.1, "acc/top1": acc, "robust/pgd": rob,
                          "run_link": f"http://mlflow/#/runs/{t}"} for t, r, e, s, acc, rob in rows])


def test_setting_means_sd_and_n_are_hand_computed_and_the_front_is_over_means():
    from analysis.report import analyse

    a = analyse(_frame(), OBJS)
    assert a.by_setting
    v = a.valid.set_index("trial_id")
    assert list(v.index) == ["a0, a1", "b0, b1", "c0"]
    sd2 = math.sqrt(2 * 0.1 ** 2 / 1)            # two values 0.1 either side of the mean, ddof 1
    # float64 means/sds of two decimal values: 1e-12 covers their representation error
    assert v.loc["a0, a1", "acc/top1"] == pytest.approx(0.7, abs=1e-12)
    assert v.loc["a0, a1", "acc/top1 sd"] == pytest.approx(sd2, abs=1e-12)
    assert v.loc["b0, b1", "robust/pgd"] == pytest.approx(0.4, abs=1e-12)
    assert v.loc["b0, b1", "robust/pgd sd"] == pytest.approx(sd2, abs=1e-12)
    assert list(v["n"]) == [2, 2, 1] and math.isnan(v.loc["c0", "acc/top1 sd"])
    assert "seed" not in v.loc["b0, b1", "settings"] and "eps=0.03" in v.loc["b0, b1", "settings"]
    # c0 (0.59, 0.38) is dominated by b's mean (0.6, 0.4) but by neither b trial alone
    assert set(a.front["trial_id"]) == {"a0, a1", "b0, b1"}
    per_trial = analyse(_frame(), OBJS, ).trials
    assert set(per_trial["trial_id"]) == {t[0] for t in ROWS}          # every trial still listed
    assert bool(per_trial.set_index("trial_id").loc["b1", "on_front"])  # trials carry their setting's rank
    assert not bool(per_trial.set_index("trial_id").loc["c0", "on_front"])
    single = analyse(_frame([r for r in ROWS if r[0] != "a1" and r[0] != "b1"]), OBJS)
    assert not single.by_setting and "c0" in set(single.front["trial_id"])   # no repeated seeds: per trial


def test_hypervolume_per_regime_uses_setting_means():
    from analysis import pareto
    from analysis.report import analyse

    a = analyse(_frame(), OBJS)
    objs = pareto.resolve_objectives([{"key": k, "direction": d} for k, d in OBJS])
    means = pd.DataFrame({"acc/top1": [0.7, 0.6, 0.59], "robust/pgd": [0.2, 0.4, 0.38]})
    ref = pareto.reference_point(means, objs)
    assert a.hypervolume == pytest.approx(pareto.hypervolume(means, objs, ref=ref), abs=1e-12)
    assert a.hv_by_regime["standard"] == pytest.approx(pareto.hypervolume(means.iloc[[0]], objs, ref=ref), abs=1e-12)


def test_front_figures_carry_error_bars_and_the_html_the_sd_columns(tmp_path):
    from analysis import plots
    from analysis.report import analyse, render
    from analysis.sections import Context, pareto_fronts

    a = analyse(_frame(), OBJS)
    front = plots.to_plotly(pareto_fronts(Context(a)).figures[0])
    bars = [t for t in front.data if t.error_y is not None and t.error_y.array is not None]
    assert bars, "no error bars on the front plot"
    std = next(t for t in bars if t.name == "standard")
    assert list(std.error_y.array) == pytest.approx([math.sqrt(0.02)], abs=1e-12)
    assert list(std.error_x.array) == pytest.approx([math.sqrt(0.02)], abs=1e-12)
    html, pngs = render(a, {"sweep": "s"}, png_dir=tmp_path)
    assert pngs and all(p.exists() for p in pngs)
    assert "<th>acc/top1 sd</th>" in html and "<th>n</th>" in html and "several seeds" in html


def test_sweep_summary_rows_per_setting():
    from sweeps.summary import setting_rows

    def row(t, regime, seed, acc, eps=None):
        params = {"seed": seed} | ({"eps": eps} if eps is not None else {})
        return {"trial": t, "regime": regime, "status": "completed", "acc/top1": acc, "params": params}

    rows = [row("a", "standard", 0, 0.8), row("b", "standard", 1, 0.6), row("c", "fgsm_at", 0, 0.5, 0.03),
            {**row("d", "fgsm_at", 1, float("nan"), 0.03), "status": "failed"}]
    out = {r["regime"]: r for r in setting_rows(rows, ["acc/top1"])}
    assert out["standard"]["n"] == 2 and out["standard"]["acc/top1"] == f"0.7 ± {math.sqrt(0.02):.2g}"
    assert out["fgsm_at"]["n"] == 1 and out["fgsm_at"]["settings"] == "eps=0.03"   # the failed seed is not counted
    assert setting_rows(rows[:1] + rows[2:3], ["acc/top1"]) == []                    # no repeated seed
