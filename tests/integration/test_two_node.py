"""A real 2-node Ray cluster on this machine (head + worker node via `ray start`) runs a 2-trial sweep.

Runs last (file order): `ray stop` ends every Ray process of this machine, so the session cluster of the
other integration tests is shut down first.
"""
import json
import os
import socket
import subprocess
import sys

import mlflow
import pytest
import yaml

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_runs_on_both_nodes(tmp_path):
    import ray

    ray.shutdown()
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    start = [ray_bin, "start", "--disable-usage-stats", "--num-cpus=1"]
    try:
        subprocess.run(start + ["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                "--include-dashboard=false", '--resources={"trial_slot": 4}'],
                       check=True, env=env, capture_output=True, timeout=120)
        subprocess.run(start + [f"--address={address}", "--node-ip-address=127.0.0.1"],
                       check=True, env=env, capture_output=True, timeout=120)
        spec = {
            "name": "two-node",
            "base": {"dataset": {"name": "shapes", "image_size": 32, "train_size": 64, "test_size": 32},
                     "model": {"backbone": "smallcnn"}, "optim": {"epochs": 1, "batch_size": 32},
                     "evaluation": {"groups": ["accuracy"], "num_images": 16}},
            "regimes": {"standard": {}},
            "search": {"optim.lr": {"type": "categorical", "choices": [1e-3, 3e-3]}},
            "objectives": [{"key": "acc/top1"}],
            "sampler": {"name": "grid"},
            "num_samples": 2, "max_concurrent": 2,
            "storage_path": str(tmp_path / "shared"),
        }
        path = tmp_path / "two_node.yaml"
        path.write_text(yaml.safe_dump(spec))
        out = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", str(path), "--address", address,
                              "--results", str(tmp_path / "res")], env=env, capture_output=True, text=True,
                             timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'res' / 'mlflow.db').resolve()}")
    runs = mlflow.search_runs(experiment_names=["two-node"])
    trials = runs[runs["tags.arx.role"] == "trial"]
    assert len(trials) == 2 and (trials["tags.arx.status"] == "completed").all()
    assert trials["tags.arx.node_id"].nunique() == 2  # one trial on each node
    assert (tmp_path / "shared" / "two-node").is_dir()  # Tune state on the shared storage path
    json.dumps(list(trials["tags.arx.node_id"]))
