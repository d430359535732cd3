"""``analysis.runs.load_tune_results`` reads a real Tune experiment through Tune's public ``ExperimentAnalysis`` /
``ResultGrid`` (#19.4): the same trial table and status rule as the MLflow path and the sweep summary."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_load_tune_results_from_a_real_tune_run(ray_cluster, tmp_path):
    from ray import tune

    from analysis.runs import load_tune_results
    from sweeps.summary import trial_rows

    def _trainable(config):  # defined here: Ray pickles it by value (the test module is not importable there)
        tune.report({"epoch": 0, "train/loss": 1.0})
        if config["trial"]["regime"]["name"] == "standard":
            raise ValueError("bad lr")
        tune.report({"arx_done": True, "acc/top1": 0.9, "robust/pgd": 0.3, "mlflow_run_id": "r0"})

    trials = [{"regime": {"name": "fgsm_at", "params": {"eps": 0.03}}, "optim": {"lr": 0.01}},
              {"regime": {"name": "standard", "params": {}}, "optim": {"lr": 10.0}}]
    tuner = tune.Tuner(_trainable, param_space={"trial": tune.grid_search(trials),
                                                "tracking": {"uri": "sqlite:///x.db", "parent_run_id": "p1"}},
                       run_config=tune.RunConfig(name="shapes_test", storage_path=str(tmp_path / "ray"), verbose=0))
    grid = tuner.fit()
    df = load_tune_results(tmp_path / "ray").set_index("regime")          # the directory holding the experiment
    a, b = df.loc["fgsm_at"], df.loc["standard"]
    assert (a["status"], a["run_id"], a["parent_run_id"]) == ("completed", "r0", "p1")
    assert a["acc/top1"] == pytest.approx(0.9) and a["params.regime.params.eps"] == pytest.approx(0.03)
    assert b["status"] == "failed" and b["failure_reason"].endswith("bad lr")
    assert df.attrs["sweep_name"] == "shapes_test" and df.attrs["source"] == "tune"
    rows = {r["regime"]: r for r in trial_rows(grid, ["acc/top1"], ["optim.lr"])}   # the summary: same rule
    assert (rows["fgsm_at"]["status"], rows["standard"]["status"]) == ("completed", "failed")
    assert rows["standard"]["reason"].endswith("bad lr") and rows["fgsm_at"]["params"] == {"eps": 0.03, "optim.lr": 0.01}
