"""The "one new module" promise, tested: a throw-away metric family written as one module of
``trainables/evaluation/`` (one class and one keys row, added at import) is accepted as a sweep objective
by the spec and logged to MLflow by a real trial (Ray Train worker, MLflow sqlite), per-image table included."""
import importlib
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import torch

from sweeps.spec import SweepSpec
from trainables.config import TrialConfig
from trainables.trainable import TrackingInfo, fit_trial

pytestmark = pytest.mark.integration

NAME = "toy_brightness"
MODULE = textwrap.dedent('''
    """A throw-away metric family (written and removed by tests/integration/test_metric_family_plugin.py)."""
    from trainables.evaluation import Family, register_family
    from trainables.metrics.keys import MetricKey, register_key

    register_key(MetricKey("toy/brightness", "max", "toy", "mean pixel value of the evaluated images"))


    @register_family("toy_brightness")
    class Brightness(Family):
        group = "toy"
        keys = ("toy/brightness",)

        def per_image(self, batch):
            return {"toy/brightness": batch["image"].flatten(1).mean(1)}
''')


@pytest.fixture
def toy_family():
    import trainables.evaluation as ev
    from trainables.metrics.keys import KEYS

    path = Path(ev.__file__).parent / f"{NAME}.py"
    path.write_text(MODULE)
    try:
        yield importlib.import_module(f"trainables.evaluation.{NAME}")
    finally:
        path.unlink()
        ev.FAMILIES._items.pop(NAME, None)
        KEYS.pop("toy/brightness", None)
        sys.modules.pop(f"trainables.evaluation.{NAME}", None)


def test_a_new_family_module_is_an_objective_and_is_logged_by_a_real_trial(ray_cluster, tiny_trial, toy_family,
                                                                          tmp_path):
    from trainables.data import build_dataset
    from trainables.evaluation import subset_indices

    trial = tiny_trial | {"evaluation": tiny_trial["evaluation"] | {"groups": ["accuracy", "toy"]}}
    spec = SweepSpec.model_validate({"name": "toy", "base": trial, "regimes": {"standard": {}},
                                     "objectives": [{"key": "acc/top1"}, {"key": "toy/brightness"}]})
    assert [o.key for o in spec.objectives] == ["acc/top1", "toy/brightness"]
    with pytest.raises(ValueError, match="toy/brightness.*'toy' evaluation group"):
        SweepSpec.model_validate({"name": "toy", "base": tiny_trial, "regimes": {"standard": {}},
                                  "objectives": [{"key": "toy/brightness"}]})

    cfg = TrialConfig.parse(trial)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = TrackingInfo(uri=uri, experiment="it-toy", trial_id="toy1")
    out = fit_trial(cfg, "run-toy", str(tmp_path / "ray"), info)
    test = build_dataset(cfg.dataset).split("test")
    idx = subset_indices(len(test), cfg.evaluation.num_images, cfg.evaluation.seed)
    expected = float(torch.stack([test[i]["image"].mean() for i in idx]).mean())
    # float32 means of the same pixels in another order and grouping (per image, then over images): rounding
    # ~1e-7 x log(#pixels) relative; rel 1e-5 leaves ~100x
    assert out["toy/brightness"] == pytest.approx(expected, rel=1e-5)
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("it-toy").experiment_id])[0]
    assert run.data.metrics["toy/brightness"] == pytest.approx(expected, rel=1e-5)
    import pandas as pd

    table = pd.read_parquet(client.download_artifacts(run.info.run_id, "per_image.parquet", str(tmp_path)))
    assert table["toy/brightness"].notna().sum() == len(idx) and len(table) == len(test)
