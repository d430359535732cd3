"""``arx sweep`` (the default sweep's CLI path, shrunk with ``--set``) prints arx's lines only; Ray's own
lines, warnings and worker tracebacks are in the log file whose path it prints."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TINY = ["num_samples=2", "max_concurrent=2", "base.optim.epochs=2", "early_stopping.rungs=[1]",
        "early_stopping.images=8", "base.dataset.params.n_train=64", "base.dataset.params.n_test=32",
        "base.evaluation.num_images=8", "base.evaluation.robust.ara_images=2", "base.evaluation.robust.ara_steps=5",
        "base.evaluation.robust.explain_images=1", "base.evaluation.explain.gallery_images=1"]
RAY_INTERNALS = ["(raylet)", "(PlacementGroupCleaner", "core_worker", "Traceback", "SystemExit",
                 "tensorboard", "TensorBoard", "pid=", "WARNING", "fontManager", "Configuration for experiment"]


def test_default_sweep_console_is_arx_only(tmp_path):
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", "--results", str(res)]
    for item in TINY:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    console = out.stdout + out.stderr
    leaked = [line for line in console.splitlines() if any(s in line for s in RAY_INTERNALS)]
    assert not leaked, leaked
    # arx's own lines are all there: the start, per-trial progress, the summary and the Pareto set
    assert "arx sweep 'default'" in out.stdout and "[2/2] trial" in out.stdout and "Pareto set" in out.stdout
    # the log path is printed once, at the start, and the file is under the results directory
    logs = re.findall(r"own output goes to (\S+)", out.stdout)
    assert len(logs) == 1 and out.stdout.index(logs[0]) < out.stdout.index("arx sweep 'default'"), out.stdout
    log = Path(logs[0])
    assert log.parent == (res / "logs").resolve() and log.is_file()
    text = log.read_text(errors="replace")
    # Ray's own output is in the log: Tune's header and TensorBoard hint, lines forwarded from Ray actors
    assert "Configuration for experiment" in text and "tensorboard --logdir" in text, text[-3000:]
    # (single-worker trials run in their Tune trial process, `tune_trial`; Ray Train trials in its actors)
    assert re.search(r"\((tune_trial|TrainController|RayTrainWorker|PlacementGroupCleaner|raylet)[^)]*\)", text), text[-3000:]
    # `arx report` on the same results: its steps and the report path, nothing from matplotlib / plotly / MLflow
    rep = subprocess.run([sys.executable, "-m", "sweeps.cli", "report", "--results", str(res)], capture_output=True,
                         text=True, env=env, timeout=600, cwd=tmp_path)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    lines = (rep.stdout + rep.stderr).splitlines()
    assert not [line for line in lines if any(s in line for s in RAY_INTERNALS + ["INFO", "mlflow.store", "mlflow.tracking", "Matplotlib"])], lines
    steps = [line.strip() for line in lines if line.startswith("  ") and line.strip().endswith("…")]
    assert [s.split(" ")[0] for s in steps] == ["reading", "reading", "drawing", "logging"], lines
    assert any(line.startswith("report: ") and line.endswith("report.html") for line in lines), lines
