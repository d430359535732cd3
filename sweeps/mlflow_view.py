"""``arx ui``'s link: the MLflow UI's runs view of a sweep with its trials, the objectives, regime and status
as columns, sorted by the first objective.

MLflow 3.17's UI takes its runs-view state from a *shared view*: an experiment tag
``mlflow.sharedViewState.<key>`` holding the state as JSON (search filter, sort, selected columns) and the link
``#/experiments/<id>/runs?viewStateShareKey=<key>`` (what its "Share" button makes). A link cannot expand a
parent run (``runsExpanded`` is not shared), so the view filters on the sweep's parent run: the trials are the
rows. Column keys are the UI's canonical ``metrics.`acc/top1```.

The experiment's kind tag (``mlflow.experimentKind = custom_model_development``, set by
``trainables.tracking.get_or_create_experiment``) is what MLflow 3 reads for an experiment's kind, but 3.17's UI
takes the sidebar's GenAI / Model-training mode from its ``workflowType`` (URL parameter, else the browser's
saved choice, default GenAI) before the tag: a bare experiment link still lands on the GenAI overview there
(measured with headless Chromium), so the link also carries ``workflowType=machine_learning``.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from urllib.parse import quote

from trainables.tracking import PARENT_TAG, REGIME_TAG, STATUS_TAG

SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
WORKFLOW = "machine_learning"  # the UI's "Model training" mode (its default, "genai", shows traces first)


def column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"


def trials_view_state(parent_run_id: str, objectives: list[dict]) -> dict:
    """The runs view of one sweep: its trial runs, objective / regime / status columns, first objective first."""
    first = objectives[0] if objectives else None
    return {
        "searchFilter": f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        "orderByKey": column("metrics", first["key"]) if first else column("attributes", "start_time"),
        "orderByAsc": bool(first and first.get("direction") == "min"),
        "selectedColumns": [column("tags", REGIME_TAG), column("tags", STATUS_TAG),
                            *(column("metrics", o["key"]) for o in objectives)],
        "runListHidden": False,
        "viewMaximized": False,
    }


def share_trials_view(uri: str, sweep: str | None) -> tuple[str, str]:
    """Write the sweep's shared view to its experiment; returns (URL path after the UI's base, sweep name)."""
    from mlflow.tracking import MlflowClient

    from analysis.runs import resolve_sweep

    ref = resolve_sweep(uri, sweep)
    client = MlflowClient(tracking_uri=uri)
    objectives = ref.objectives or []
    if ref.parent_run_id:
        state = trials_view_state(ref.parent_run_id, objectives)
    else:  # an experiment without a parent run: all its runs
        state = {**trials_view_state("", objectives), "searchFilter": ""}
    key = f"arx-{ref.parent_run_id or ref.experiment_id}"
    client.set_experiment_tag(ref.experiment_id, SHARED_VIEW_PREFIX + key, json.dumps(state))
    return (f"#/experiments/{ref.experiment_id}/runs?viewStateShareKey={quote(key)}"
            f"&workflowType={WORKFLOW}"), ref.name


def open_when_up(url: str, probe: str, timeout_s: float = 120) -> bool:
    """Open ``url`` in the user's browser once ``probe`` answers (a thread; no-op without a browser)."""
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False

    def wait_and_open():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(probe, timeout=2).close()
                webbrowser.open(url)
                return
            except OSError:
                time.sleep(0.5)

    threading.Thread(target=wait_and_open, daemon=True, name="arx-open-ui").start()
    return True
