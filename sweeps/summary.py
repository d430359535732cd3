"""End of a sweep: the results table, the failures with their reasons, the Pareto set; parent run closed."""
from __future__ import annotations

import math

import pandas as pd

from sweeps.console import console, rows_table


def trial_rows(grid, objectives: list[str], search_keys=(), pruned: dict | None = None) -> list[dict]:
    """One row per trial of the trial table ``analysis.runs.results_frame`` builds from Tune's results (the
    report's table and status rule); ``params``: the regime's parameters and the values of the shared ``search``
    paths. ``pruned``: the rung table's pruned trials (``sweeps/rung_table.py``): status ``pruned`` with the rung."""
    from analysis.runs import PARAM_PREFIX, results_frame

    df = results_frame(grid, pruned=pruned or {})
    regime_params = [c for c in df.columns if c.startswith(PARAM_PREFIX + "regime.params.")]
    return [_row(r, objectives, regime_params, search_keys) for _, r in df.iterrows()]


def _row(r: pd.Series, objectives: list[str], regime_params: list[str], search_keys) -> dict:
    from analysis.runs import PARAM_PREFIX

    row = {"trial": r["trial_id"], "regime": r["regime"], "status": r["status"]}
    for k in objectives:
        row[k] = float(r[k]) if k in r.index and pd.notna(r[k]) else math.nan
    if row["status"] == "pruned":
        row |= {"rung": int(r["rung"]) if pd.notna(r.get("rung")) else None, "saved_s": float(r["device_seconds_saved"])}
    elif r["failure_reason"]:
        row["reason"] = str(r["failure_reason"])[:300]
    row["mlflow_pending"] = int(r["mlflow_pending"]) if pd.notna(r.get("mlflow_pending")) else 0
    row["params"] = {c[len(PARAM_PREFIX + "regime.params."):]: _value(r[c]) for c in regime_params if pd.notna(r[c])}
    row["params"] |= {k: _value(r.get(PARAM_PREFIX + k)) for k in search_keys}
    return row


def _value(v):
    """A table cell back as a plain Python value (NaN -> None, numpy scalars -> int / float)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


OK_STATUSES = ("completed", "pruned")  # pruned: stopped early by a scheduler, a normal outcome


def failed_rows(rows: list[dict]) -> list[dict]:
    """The trials that neither completed nor were pruned (``arx sweep`` then exits 1)."""
    return [r for r in rows if r["status"] not in OK_STATUSES]


def pareto_rows(rows: list[dict], objectives: list[str], modes: list[str]) -> list[dict]:
    from analysis.pareto import non_dominated

    done = [r for r in rows if r["status"] == "completed"]
    if not done:
        return []
    df = pd.DataFrame([{k: r[k] for k in objectives} for r in done])
    mask = non_dominated(df, objectives, modes)
    return [r for r, keep in zip(done, mask) if keep]


def setting_rows(rows: list[dict], objectives: list[str]) -> list[dict]:
    """Completed trials that differ only in ``seed``, one row per setting (``mean ± sd`` strings, ``n``);
    empty when no setting ran with more than one seed (``analysis/seeds.py`` is the report's version)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "completed":
            key = {k: v for k, v in r["params"].items() if k != "seed"}
            groups.setdefault((r["regime"], tuple(sorted((k, repr(v)) for k, v in key.items()))), []).append(r)
    if all(len(g) < 2 for g in groups.values()):
        return []
    out = []
    for (regime, key), g in groups.items():
        row = {"regime": regime, "n": len(g), "settings": ", ".join(f"{k}={v}" for k, v in key) or "(defaults)"}
        for k in objectives:
            vals = pd.Series([r[k] for r in g], dtype=float)
            row[k] = f"{vals.mean():.4g} ± {vals.std(ddof=1):.2g}" if len(g) > 1 else f"{vals.mean():.4g}"
        out.append(row)
    return out


def summarize(spec, grid, paths, parent_run_id: str, name: str) -> dict:
    from sweeps.rung_table import RungTable, table_path

    objectives, modes = spec.metric_names, spec.modes
    pruned = RungTable(table_path(paths["rungs"], name)).pruned if spec.early_stopping else {}
    rows = trial_rows(grid, objectives, list(spec.search), pruned)
    front = pareto_rows(rows, objectives, modes)
    cols = ["trial", "regime", "status", *objectives]
    console.print(rows_table(f"sweep {name}: {len(rows)} trials", rows, cols))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        console.print(rows_table("failed trials", failed, ["trial", "regime", "reason"]))
    if stopped := [r for r in rows if r["status"] == "pruned"]:
        console.print(rows_table(f"pruned trials (early stopping; ~{sum(r['saved_s'] for r in stopped):.0f} "
                                 "device-seconds saved)", stopped, ["trial", "regime", "rung", "saved_s"]))
    incomplete = [r for r in rows if r.get("mlflow_pending")]
    if incomplete:
        console.print(rows_table("incomplete in MLflow (tracking server unreachable; deliver with `arx sync`)",
                                 incomplete, ["trial", "regime", "mlflow_pending"]))
    if settings := setting_rows(rows, objectives):
        console.print(rows_table("per setting over seeds (mean ± sd, n)", settings,
                                 ["regime", *objectives, "n", "settings"]))
    front_rows = [{**r, "settings": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in r["params"].items()) or "(defaults)"} for r in front]
    console.print(rows_table("Pareto set (" + ", ".join(f"{k} {m}" for k, m in zip(objectives, modes)) + ")",
                             front_rows, ["trial", "regime", *objectives, "settings"]))
    if line := _overhead(paths["tracking"], parent_run_id):
        console.print(line)
    try:
        _close_parent(paths["tracking"], parent_run_id, rows, front)
    except Exception as e:  # noqa: BLE001 - an unreachable tracking server must not cost the summary
        console.print(f"MLflow unreachable at the end of the sweep ({str(e).splitlines()[0][:160]}): the parent run "
                      f"is left open; `arx sweep {name} --resume` closes it once the server is back")
    console.print(f"results: {paths['storage']}/{name}; MLflow: {paths['tracking']} (browse with `arx ui`)")
    return {"name": name, "rows": rows, "pareto": front, "parent_run_id": parent_run_id}


def _overhead(uri: str, parent_run_id: str) -> str | None:
    """The trial overhead line (``trainables/timing.py``) over the sweep's trial runs in MLflow (None when the
    tracking server cannot be read: the summary never fails for it)."""
    from mlflow.tracking import MlflowClient

    from trainables.outbox import quick_http
    from trainables.timing import overhead_line
    from trainables.tracking import PARENT_TAG

    client = MlflowClient(tracking_uri=uri)
    try:
        with quick_http():
            exp_id = client.get_run(parent_run_id).info.experiment_id
            runs = client.search_runs([exp_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10000)
    except Exception:  # noqa: BLE001 - unreachable or refused: no overhead line
        return None
    ms = [r.data.metrics for r in runs]
    return overhead_line([m.get("cost/overhead_seconds") for m in ms], [m.get("cost/trial_wall_seconds") for m in ms])


def _close_parent(uri: str, run_id: str, rows: list[dict], front: list[dict]) -> None:
    from mlflow.tracking import MlflowClient

    from trainables.outbox import quick_http

    with quick_http():   # one short attempt per call: the trials' own writes are safe in their outboxes
        _close_parent_with(MlflowClient(tracking_uri=uri), run_id, rows, front)


def _close_parent_with(client, run_id: str, rows: list[dict], front: list[dict]) -> None:
    from trainables.tracking import close_parent_run

    close_parent_run(client, run_id, [r["status"] for r in rows], [r["trial"] for r in front])
