"""Build a real MLflow sqlite store laid out as the sweep launcher does (for the report tests).

experiment = sweep name; a parent run (``arx.role=sweep``, ``arx.objectives``, ``sweep.yaml``); one child run
per trial (``mlflow.parentRunId``, ``arx.*`` tags, flattened params, final metrics, per-epoch ``train/*``,
``metrics.json``, sometimes ``cam_gallery.png``, and ``per_image.parquet``: 20 images, trial ``i`` of the list
misclassifies images ``i`` and ``i + 5``, ``explain/gini_vg`` = 0.3 + 0.01·index + 0.1·i on its correct images).
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import time
from pathlib import Path

_TEMPLATE: list[Path] = []   # an initialised empty store, made once per test session (MLflow's migrations are slow)

OBJECTIVES = [{"key": "acc/top1", "direction": "max"}, {"key": "robust/pgd", "direction": "max"},
              {"key": "explain/box_iou", "direction": "max"}]

# trial id, regime, params, final metrics (None = failed with that reason), CAM gallery?
TRIALS = [
    ("t0", "standard", {"optim.lr": 0.01}, {"acc/top1": 0.92, "robust/pgd": 0.05, "explain/box_iou": 0.40}, True),
    ("t1", "standard", {"optim.lr": 0.001}, {"acc/top1": 0.90, "robust/pgd": 0.03, "explain/box_iou": 0.30}, False),
    ("t2", "fgsm_at", {"optim.lr": 0.01, "regime.params.eps": 0.03},
     {"acc/top1": 0.915, "robust/pgd": 0.30, "explain/box_iou": 0.45}, True),
    ("t3", "fgsm_at", {"optim.lr": 0.003, "regime.params.eps": 0.06},
     {"acc/top1": 0.85, "robust/pgd": 0.45, "explain/box_iou": 0.35}, False),
    ("t4", "trades", {"optim.lr": 0.003, "regime.params.beta": 6.0},
     {"acc/top1": 0.80, "robust/pgd": 0.50, "explain/box_iou": 0.55}, True),
    ("t5", "trades", {"optim.lr": 0.01, "regime.params.beta": 1.0}, "CUDA out of memory on worker 1", False),
]


def _png(path: Path, seed: int) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 1), dpi=50)
    ax = fig.add_subplot(111)
    ax.imshow(np.random.default_rng(seed).random((8, 24)))
    ax.axis("off")
    fig.savefig(path)


def fresh_store(root: Path) -> str:
    """``sqlite:///root/mlflow.db``: a copy of an empty, already migrated MLflow database."""
    from mlflow.tracking import MlflowClient

    if not _TEMPLATE:
        d = Path(tempfile.mkdtemp(prefix="arx_mlflow_template_"))
        atexit.register(shutil.rmtree, d, True)  # one template per test process, removed when it ends
        MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}").search_experiments()
        _TEMPLATE.append(d / "mlflow.db")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "mlflow.db").exists():
        shutil.copyfile(_TEMPLATE[0], root / "mlflow.db")
    return f"sqlite:///{root / 'mlflow.db'}"


def per_image_table(i: int):
    """The per-image table of the i-th trial (see the module docstring)."""
    import numpy as np
    import pandas as pd

    index = np.arange(20)
    label = index % 4
    pred = np.where(np.isin(index, [i, i + 5]), (label + 1) % 4, label)
    gini = np.where(pred == label, 0.3 + 0.01 * index + 0.1 * i, np.nan)
    return pd.DataFrame({"index": index, "label": label, "pred": pred, "acc/top1": (pred == label).astype(float),
                         "explain/gini_vg": gini})


def build_store(root: Path, sweep: str = "shapes_test", trials=TRIALS, objectives=OBJECTIVES,
                uri: str | None = None) -> tuple[str, str, dict[str, str]]:
    """Create the sweep in the store at ``root/mlflow.db``; returns (tracking uri, parent run id, trial -> run id)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from trainables.tracking import get_or_create_experiment

    uri = uri or fresh_store(root)
    client = MlflowClient(tracking_uri=uri)
    exp_id = get_or_create_experiment(client, sweep)
    parent = client.create_run(exp_id, run_name=sweep, tags={
        "arx.role": "sweep", "arx.tune_name": sweep, "arx.objectives": json.dumps(objectives),
        "arx.constraints": json.dumps([])})
    pid = parent.info.run_id
    client.log_text(pid, f"name: {sweep}\nnum_samples: {len(trials)}\n", "sweep.yaml")
    ids = {}
    with tempfile.TemporaryDirectory() as d:
        for i, (tid, regime, params, final, cam) in enumerate(trials):
            failed = isinstance(final, str)
            tags = {"mlflow.parentRunId": pid, "arx.role": "trial", "arx.trial_id": tid, "arx.regime": regime,
                    "arx.dataset": "shapes", "arx.backbone": "smallcnn", "arx.sweep": sweep,
                    "arx.status": "failed" if failed else "completed"}
            if failed:
                tags["arx.failure_reason"] = final
            run = client.create_run(exp_id, run_name=f"{regime}-{tid}", tags=tags)
            rid = run.info.run_id
            ids[tid] = rid
            flat = {"regime.name": regime, "dataset.name": "shapes", "model.backbone": "smallcnn", "optim.epochs": 2,
                    "name": sweep, **params}
            client.log_batch(rid, params=[Param(k, str(v)) for k, v in flat.items()])
            now = int(time.time() * 1000)
            epochs = [Metric("train/loss", 1.0 / (e + 1), now, e) for e in range(2)]
            client.log_batch(rid, metrics=epochs)
            if not failed:
                client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in final.items()])
                p = Path(d) / "metrics.json"
                p.write_text(json.dumps(final))
                client.log_artifact(rid, str(p))
                table = per_image_table(i)
                table.to_parquet(Path(d) / "per_image.parquet", index=False)
                client.log_artifact(rid, str(Path(d) / "per_image.parquet"))
                client.log_batch(rid, metrics=[Metric("explain/gini_vg", float(table["explain/gini_vg"].mean()), now, 0)])
                if cam:
                    png = Path(d) / "cam_gallery.png"
                    _png(png, i)
                    client.log_artifact(rid, str(png))
            client.set_terminated(rid, "FAILED" if failed else "FINISHED")
    client.set_terminated(pid, "FINISHED")
    return uri, pid, ids
