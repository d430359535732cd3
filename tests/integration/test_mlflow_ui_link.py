"""``arx ui`` prints a link on which the real MLflow UI (the server ``arx ui`` starts on a sweep's store) shows
the sweep's trial runs with the objectives, regime and status as columns, sorted by the first objective, in
the model-training mode — not the GenAI overview (traces, latency, token usage). Rendered by headless Chromium
(``--dump-dom`` after a virtual-time budget, so the JS app has fetched the runs)."""
import os
import re
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from headless import free_port, page_text, served

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from report_store import TRIALS, build_store  # noqa: E402

pytestmark = pytest.mark.integration


def _row(final: dict, regime: str) -> str:
    # the UI's metric columns are alphabetical; then the two tag columns
    return " ".join([*(f"{final[k]:g}" for k in sorted(final)), regime, "completed"])


def test_arx_ui_link_shows_the_trials_sorted_by_the_first_objective(tmp_path):
    uri, parent, runs = build_store(tmp_path / "res", "ui_sweep")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "sweeps.cli", "ui", "--results", str(tmp_path / "res"), "--port", str(port),
           "--no-open"]
    log = tmp_path / "ui.log"
    with served(cmd, f"http://127.0.0.1:{port}/health", log, env=env):
        links = re.findall(r"the trials of sweep 'ui_sweep': (\S+)", log.read_text())
        assert len(links) == 1, log.read_text()[-3000:]
        text, _ = page_text(links[0], tmp_path, budget_ms=30000)
    exp = MlflowClient(uri).get_experiment_by_name("ui_sweep")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    for absent in ("Token Usage", "Latency", "Tokens per Trace"):  # the GenAI overview's panels
        assert absent not in text, (absent, text[:3000])
    assert "Model training" in text and "Sort: acc/top1" in text, text[:3000]
    header = re.search(r"Duration (.*?) Hide run", text)
    assert header and header.group(1).split() == ["acc/top1", "explain/box_iou", "robust/pgd", "arx.regime",
                                                   "arx.status"], text[:3000]
    assert f"{len(TRIALS)} matching runs" in text  # the trials, not the parent run
    for tid, regime, _, _, _ in TRIALS:
        assert f"{regime}-{tid}" in text
    done = sorted((t for t in TRIALS if isinstance(t[3], dict)), key=lambda t: -t[3]["acc/top1"])
    rows = [_row(t[3], t[1]) for t in done]
    positions = [text.find(r) for r in rows]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), (rows, text[:4000])
    assert re.search(r"- - - trades failed", text)  # the failed trial: no objective values, last
