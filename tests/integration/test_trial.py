"""The trial on the real stack: Ray Train (DDP, gloo), checkpoints and resume, MLflow runs."""
import copy

import mlflow
import pytest
import torch

from trainables.config import TrialConfig
from trainables.loop import STATE_FILE
from trainables.trainable import TrackingInfo, fit_trial

pytestmark = pytest.mark.integration


def _search(uri, **kwargs):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(**kwargs)


def _uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _state(result_path_or_ckpt):
    with result_path_or_ckpt.as_directory() as d:
        return torch.load(f"{d}/{STATE_FILE}", weights_only=False)


def test_trial_logs_run_to_mlflow(ray_cluster, tiny_trial, tmp_path):
    cfg = TrialConfig.parse(tiny_trial)
    info = TrackingInfo(uri=_uri(tmp_path), experiment="it-trial", trial_id="t1")
    out = fit_trial(cfg, "run-mlflow", str(tmp_path / "ray"), info)
    assert 0.0 <= out["acc/top1"] <= 1.0
    runs = _search(info.uri, experiment_names=["it-trial"], filter_string="tags.`arx.trial_id` = 't1'")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["params.optim.lr"] == "0.003" and run["params.regime.name"] == "standard"
    assert run["metrics.acc/top1"] == pytest.approx(out["acc/top1"])  # the same float, through MLflow: rel 1e-6
    assert run["tags.arx.status"] == "completed"
    history = mlflow.MlflowClient(info.uri).get_metric_history(run["run_id"], "train/loss")
    assert sorted(m.step for m in history) == [0, 1]  # one value per epoch
    # the per-image table of the final evaluation: every test image, its label, prediction and values
    import pandas as pd

    table = pd.read_parquet(mlflow.MlflowClient(info.uri).download_artifacts(run["run_id"], "per_image.parquet",
                                                                            str(tmp_path)))
    assert list(table.columns[:3]) == ["index", "label", "pred"] and table["index"].tolist() == list(range(64))
    assert table["acc/top1"].mean() == pytest.approx(out["acc/top1"])  # a mean of 64 0/1 values in float64


def _one_step_cfg(tiny_trial, workers, batch):
    d = copy.deepcopy(tiny_trial)
    d["model"] = {"backbone": "smallcnn_gn"}  # per-sample normalisation: DDP == union batch exactly
    d["dataset"]["train_size"] = 16
    d["optim"] = {"epochs": 1, "batch_size": batch, "lr": 0.05, "optimizer": "sgd", "schedule": "constant"}
    d["resources"] = {"num_workers": workers}
    return TrialConfig.parse(d)


def test_two_worker_ddp_step_equals_one_worker_union_batch(ray_cluster, tiny_trial, tmp_path):
    """Each of 2 ranks steps once on 8 images; 1 rank steps once on the same 16: same parameters."""
    import ray.train

    from trainables.loop import build_model_and_regime

    cfg2, cfg1 = _one_step_cfg(tiny_trial, 2, 8), _one_step_cfg(tiny_trial, 1, 16)
    two = fit_trial(cfg2, "ddp-2", str(tmp_path / "ray"), None)
    fit_trial(cfg1, "ddp-1", str(tmp_path / "ray"), None)
    assert two["train/images"] == 16  # all-reduced count: both ranks stepped on their 8 images
    s2 = _state(ray.train.Checkpoint(_latest(tmp_path, "ddp-2")))
    s1 = _state(ray.train.Checkpoint(_latest(tmp_path, "ddp-1")))
    assert s2["epoch"] == s1["epoch"] == 0
    torch.manual_seed(cfg1.seed)
    init, _ = build_model_and_regime(cfg1, 4, 3)  # the same seeded initialisation the workers use
    moved = 0
    # Exact in real arithmetic; float32 because the training loop has no float64 mode. One SGD step (lr 0.05)
    # from the same weights: the runs differ only in how the 16 per-image gradients are summed (2 x 8 + an
    # all-reduce vs 16), ~1.2e-7 x 16 terms relative to |grad| <= ~1, so the weights differ by
    # <= 0.05 x 2e-6 = 1e-7, 10x inside atol 1e-6 (+ rtol 1e-5 of |w| ~ 0.1). Both runs are on one machine, so
    # another ISA changes only which kernels both use. Not covered: a ReLU pre-activation within float32
    # rounding of 0 that the batch-8 and batch-16 conv kernels round to opposite signs (it would switch that
    # unit's gradient); it does not occur with this seed and these kernels.
    for k, v in s1["model"].items():
        torch.testing.assert_close(s2["model"][k], v, rtol=1e-5, atol=1e-6)
        moved += int(not torch.allclose(init.state_dict()[k], v))  # a step of 0.05 x grad >> allclose's 1e-5
    assert moved > 0  # the step really changed parameters


def _latest(tmp_path, name):
    ckpts = sorted(p for p in (tmp_path / "ray" / name).glob("checkpoint_*") if p.is_dir())
    assert ckpts, f"no checkpoint under {tmp_path / 'ray' / name}"
    return str(ckpts[-1])


def test_resume_continues_at_next_epoch_with_optimizer_state(ray_cluster, tiny_trial, tmp_path):
    """2 epochs, then the same run restarted with 3: it resumes at epoch 2 and ends where 3 straight epochs end."""
    d = copy.deepcopy(tiny_trial)
    d["optim"] |= {"optimizer": "adam", "schedule": "constant"}
    straight = TrialConfig.parse(d | {"optim": d["optim"] | {"epochs": 3}})
    first = TrialConfig.parse(d | {"optim": d["optim"] | {"epochs": 2}})
    fit_trial(straight, "straight", str(tmp_path / "ray"), None)
    fit_trial(first, "resumed", str(tmp_path / "ray"), None)
    info = TrackingInfo(uri=_uri(tmp_path), experiment="it-resume", trial_id="r1")
    fit_trial(straight, "resumed", str(tmp_path / "ray"), info)
    hist = mlflow.MlflowClient(info.uri).get_metric_history(
        _search(info.uri, experiment_names=["it-resume"]).iloc[0]["run_id"], "train/loss")
    assert [m.step for m in hist] == [2]  # only the third epoch ran after the restart
    import ray.train

    a = _state(ray.train.Checkpoint(_latest(tmp_path, "straight")))
    b = _state(ray.train.Checkpoint(_latest(tmp_path, "resumed")))
    assert a["epoch"] == b["epoch"] == 2
    # the resumed run restores weights, Adam moments and RNG state bit for bit and repeats the same float32 ops
    # on one machine, so it is expected to agree to the bit; rtol 1e-4 / atol 1e-5 cover only a reduction split
    # another way by a worker with another thread count (rounding ~1e-6 relative in the gradients, which
    # Adam's update lr·m/√v passes on relatively: <= 3e-3 x 1e-6 per step)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5)
    assert b["optimizer"]["state"]  # Adam moments were carried over
