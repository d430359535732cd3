"""A real trial (Ray Train, MLflow) with the ``corruption`` group on logs ``shift/corruption`` and its types."""
import mlflow
import pytest

from trainables.config import TrialConfig
from trainables.trainable import TrackingInfo, fit_trial

pytestmark = pytest.mark.integration


def test_trial_with_the_corruption_group_logs_every_type(ray_cluster, tiny_trial, tmp_path):
    tiny_trial["evaluation"] = {"groups": ["accuracy", "corruption"], "num_images": 32,
                                "corruption": {"severity": 2, "types": ["gaussian_noise", "contrast", "zoom_blur"]}}
    cfg = TrialConfig.parse(tiny_trial)
    info = TrackingInfo(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="it-corruption", trial_id="c1")
    out = fit_trial(cfg, "run-corruption", str(tmp_path / "ray"), info)
    types = ["shift/corruption/gaussian_noise", "shift/corruption/contrast", "shift/corruption/zoom_blur"]
    assert out["shift/corruption"] == pytest.approx(sum(out[k] for k in types) / 3)
    mlflow.set_tracking_uri(info.uri)
    run = mlflow.search_runs(experiment_names=["it-corruption"]).iloc[0]
    for key in ["shift/corruption", *types]:
        assert run[f"metrics.{key}"] == pytest.approx(out[key])
    assert run["params.evaluation.corruption.severity"] == "2"
