"""Integration fixtures: one real local Ray cluster per test session (2 CPUs, the trial_slot resource)."""
import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from sweeps.raysession import init_ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    resources = init_ray(None)
    yield resources
    ray.shutdown()


@pytest.fixture
def tiny_trial():
    """A TrialConfig dict that trains in seconds on the embedded shapes data."""
    return {
        "name": "tiny",
        "dataset": {"name": "shapes", "image_size": 32, "train_size": 128, "test_size": 64},
        "model": {"backbone": "smallcnn"},
        "optim": {"epochs": 2, "batch_size": 32, "lr": 3e-3},
        "evaluation": {"groups": ["accuracy"], "num_images": 32},
        "resources": {"num_workers": 1},
    }
