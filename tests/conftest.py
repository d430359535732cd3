"""Shared test setup: small thread pools (2-core CI), no network, deterministic seeds."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_mlflow_uri():
    """``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI, which arx honours as the default
    store: without this, one test's search would redirect every later sweep into that test's database."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
