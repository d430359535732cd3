"""#18.4: a sweep whose dataset root is missing or mis-laid fails in the driver, before any trial starts.

The driver's own work is timed in-process (< 10 s); the CLI run checks exit 2 and one line. The CLI's wall time
is dominated by interpreter start-up (importing torch / timm to validate the spec: about 9 s of CPU, 38 s wall
at load 28 on the 2-core test VM, the same as ``--dry-run``), so it is not bounded here.
"""
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.integration


def _sweep(tmp_path, dataset):
    spec = {
        "name": "failfast",
        "base": {"dataset": dataset, "model": {"backbone": "smallcnn"},
                 "optim": {"epochs": 1, "batch_size": 8}, "evaluation": {"groups": ["accuracy"]}},
        "regimes": {"standard": {}},
        "objectives": [{"key": "acc/top1"}],
        "num_samples": 1,
    }
    path = tmp_path / "failfast.yaml"
    path.write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", str(path), "--results", str(tmp_path / "res")],
                         capture_output=True, text=True, timeout=120)
    return out, time.perf_counter() - t0


@pytest.mark.parametrize("make_root, expect", [
    (lambda tmp: tmp / "nonexistent", "nonexistent"),
    (lambda tmp: (tmp / "flat").mkdir() or tmp / "flat", "annotations/list.txt"),  # a directory, wrong layout
])
def test_bad_pets_root_fails_in_the_driver(tmp_path, make_root, expect):
    root = make_root(tmp_path)
    out, seconds = _sweep(tmp_path, {"name": "pets", "root": str(root), "image_size": 32})
    lines = [line for line in out.stderr.splitlines() + out.stdout.splitlines() if line.strip()]
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert len(lines) == 1 and str(root) in lines[0] and expect in lines[0], lines
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "res" / "mlflow.db").exists()  # no tracking run, no trial


def test_missing_root_fails_in_the_driver_within_10s(tmp_path):
    import ray

    from sweeps.launch import run_sweep
    from trainables.errors import DatasetError
    from trainables.models import backbone_exists

    backbone_exists("smallcnn")  # imports torch / timm: start-up, not the driver's check

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "failfast", "regimes": {"standard": {}}, "objectives": [{"key": "acc/top1"}],
        "base": {"dataset": {"name": "pets", "root": str(tmp_path / "nonexistent")}}}))
    ray_before = ray.is_initialized()   # an earlier test of the session may have started the shared cluster
    t0 = time.perf_counter()
    with pytest.raises(DatasetError, match="nonexistent is not a directory; expected the Oxford-IIIT Pet layout"):
        run_sweep(path, tmp_path / "res")
    assert time.perf_counter() - t0 < 10
    # no Ray started for it, no tracking store, no Tune experiment: nothing launched
    assert ray.is_initialized() == ray_before and not (tmp_path / "res" / "mlflow.db").exists()
    assert not (tmp_path / "res" / "ray").exists()
