"""End of a sweep: the results table, the failures with their reasons, the Pareto set; parent run closed."""
from __future__ import annotations

import math

import pandas as pd

from sweeps.console import console, rows_table


def trial_rows(grid, objectives: list[str], search_keys=(), pruned: dict | None = None) -> list[dict]:
    """One row per trial; ``params``: the regime's parameters and the values of the shared ``search`` paths.
    ``pruned``: the rung table's pruned trials (``sweeps/rung_table.py``): status ``pruned`` with the rung."""
    rows, pruned = [], pruned or {}
    for res in grid:
        m = res.metrics or {}
        cfg = res.config or {}
        trial = cfg.get("trial", {})
        tid = m.get("trial_id") or _trial_id(res)
        row = {"trial": tid, "regime": trial.get("regime", {}).get("name", "?"),
               "status": _status(res, m, tid in pruned)}
        for k in objectives:
            row[k] = float(m[k]) if k in m and m[k] is not None and row["status"] == "completed" else math.nan
        if row["status"] == "pruned":
            row |= {"rung": pruned[tid]["rung"], "saved_s": pruned[tid]["saved_device_seconds"]}
        elif res.error:
            row["reason"] = _reason(res.error)
        elif not m.get("arx_done"):
            row["reason"] = m.get("arx_failed", "no final result")
        row["mlflow_pending"] = int(m.get("arx_tracking_pending") or 0)  # writes the tracking server missed
        row["params"] = {k: v for k, v in trial.get("regime", {}).get("params", {}).items()}
        row["params"] |= {k: _get_path(trial, k) for k in search_keys}
        rows.append(row)
    return rows


def _status(res, metrics: dict, pruned: bool) -> str:
    """failed, pruned and completed stay three different things."""
    if res.error:
        return "failed"
    if metrics.get("arx_done"):
        return "completed"
    return "pruned" if pruned else "failed"


def _get_path(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _trial_id(res) -> str:
    path = getattr(res, "path", "") or ""
    return path.rstrip("/").split("/")[-1].split("_")[1] if "_" in path else "?"


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    tail = [line for line in text if line.strip()]
    return (tail[-1] if tail else type(err).__name__)[:300]


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

    client = MlflowClient(tracking_uri=uri)
    try:
        with quick_http():
            exp_id = client.get_run(parent_run_id).info.experiment_id
            runs = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=10000)
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
    client.log_metric(run_id, "sweep/trials_completed", sum(r["status"] == "completed" for r in rows))
    client.log_metric(run_id, "sweep/trials_failed", sum(r["status"] == "failed" for r in rows))
    client.log_metric(run_id, "sweep/trials_pruned", sum(r["status"] == "pruned" for r in rows))
    client.set_tag(run_id, "arx.pareto_trials", ",".join(str(r["trial"]) for r in front))
    client.set_terminated(run_id, "FINISHED")
