"""The trial table of a sweep (one row per trial, a pandas DataFrame): from MLflow (the normal path), or from Ray
Tune's results (``results_frame``: the end-of-sweep summary; ``load_tune_results``: a Tune directory), read
through Tune's public ``ResultGrid`` / ``ExperimentAnalysis``. One status rule (``trial_status``) serves both.

The MLflow layout and its tag names are ``trainables/tracking.py``'s (experiment = sweep name, a parent run per
launch, one child run per trial).

The trial table has one row per trial and these columns:

* ``run_id``, ``run_name``, ``trial_id``, ``regime``, ``dataset``, ``backbone``, ``status``
  (``completed`` | ``failed`` | ``pruned`` | ``running``), ``failure_reason``, ``parent_run_id``, ``experiment_id``,
  ``start_time`` (pandas Timestamp, UTC), ``run_link`` (MLflow UI URL, empty without a run id); pruned trials
  (stopped at an early-stopping rung) also ``rung`` and ``device_seconds_saved``; trials evaluated with the
  gradient-masking checks (``arx.sanity.*`` tags) also ``sanity`` (flagged checks, or ``none``) and
  ``sanity_why`` (their numbers);
* every final metric under its key (``acc/top1``, ``robust/pgd``, ``train/loss`` = last epoch, ...);
* every parameter as ``params.<flattened name>`` (``params.regime.params.eps``, ``params.optim.lr``), with
  numbers converted back from MLflow's strings when a whole column parses as numbers.

``df.attrs`` holds ``experiment_id``, ``experiment_name``, ``parent_run_id``, ``objectives`` (the parent's
``arx.objectives``, or None), ``tracking_uri`` and ``source`` ("mlflow" | "tune").
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trainables.errors import ArxError
from trainables.tracking import (BACKBONE_TAG, CONSTRAINTS_TAG, DATASET_TAG, OBJECTIVES_TAG, ORPHAN_TAG, PARENT_TAG, REASON_TAG,
                                 REGIME_TAG, ROLE_SWEEP, ROLE_TAG, RUNG_TAG, SANITY_FLAGGED_TAG, SANITY_PREFIX,
                                 SAVED_TAG, STATUS_TAG, TRIAL_ID_TAG, TUNE_NAME_TAG)

BASE_COLUMNS = ["trial_id", "regime", "status", "failure_reason", "run_id", "run_name", "dataset", "backbone",
                "parent_run_id", "experiment_id", "start_time", "run_link"]
PARAM_PREFIX = "params."
SANITY_COLUMNS = ["sanity", "sanity_why"]   # gradient-masking checks (evaluation/sanity.py): flagged checks, details
DEFAULT_UI = "http://127.0.0.1:5000"   # what ``arx ui`` serves


@dataclass
class SweepRef:
    """One sweep in a tracking store: its experiment and its parent run (None if it has none)."""
    experiment_id: str
    experiment_name: str
    parent_run_id: str | None
    name: str                                   # the parent's run name (Tune name, e.g. "default-2") or the experiment's
    objectives: list[dict] | None = None        # parsed ``arx.objectives``
    constraints: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str:
    """The MLflow UI address for run links: ``ui_url``, else ``ARX_MLFLOW_UI``, else an http(s) tracking URI
    itself, else ``http://127.0.0.1:5000`` (``arx ui``)."""
    base = ui_url or os.environ.get("ARX_MLFLOW_UI")
    if not base and str(tracking_uri).startswith(("http://", "https://")):
        base = str(tracking_uri)
    return (base or DEFAULT_UI).rstrip("/")


def run_link(base: str, experiment_id: str | None, run_id: str | None) -> str:
    if not run_id or not experiment_id:
        return ""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _search_all(client, exp_ids: list[str], filter_string: str = "", order_by: list[str] | None = None):
    out, token = [], None
    while True:
        page = client.search_runs(exp_ids, filter_string, max_results=1000, order_by=order_by, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _parse_objectives(tag: str | None) -> list[dict] | None:
    if not tag:
        return None
    try:
        val = json.loads(tag)
    except ValueError:
        return None
    if not isinstance(val, list):
        return None
    out = []
    for o in val:
        if isinstance(o, dict) and "key" in o:
            out.append({"key": str(o["key"]), "direction": o.get("direction") or o.get("mode")})
        elif isinstance(o, str):
            out.append({"key": o, "direction": None})
    return out or None


def _ref_from_parent(exp, run) -> SweepRef:
    tags = dict(run.data.tags)
    try:
        constraints = json.loads(tags.get(CONSTRAINTS_TAG, "[]"))
    except ValueError:
        constraints = []
    return SweepRef(experiment_id=exp.experiment_id, experiment_name=exp.name, parent_run_id=run.info.run_id,
                    name=tags.get(TUNE_NAME_TAG) or run.info.run_name or exp.name,
                    objectives=_parse_objectives(tags.get(OBJECTIVES_TAG)),
                    constraints=[str(c) for c in constraints] if isinstance(constraints, list) else [], tags=tags)


def list_sweeps(tracking_uri: str) -> list[SweepRef]:
    """Every sweep parent run (``arx.role=sweep``) in the store, newest first."""
    client = _client(tracking_uri)
    exps = {e.experiment_id: e for e in client.search_experiments()}
    if not exps:
        return []
    runs = _search_all(client, list(exps), f"tags.`{ROLE_TAG}` = '{ROLE_SWEEP}'", order_by=["attributes.start_time DESC"])
    runs.sort(key=lambda r: (r.info.start_time or 0), reverse=True)
    return [_ref_from_parent(exps[r.info.experiment_id], r) for r in runs]


def resolve_sweep(tracking_uri: str, sweep: str | None = None) -> SweepRef:
    """Find a sweep by name: ``None`` = the newest parent run in the store; otherwise the newest parent run
    whose Tune name / run name equals ``sweep``, else the newest parent run of the experiment ``sweep``
    (several launches of one sweep share its experiment), else an experiment ``sweep`` without a parent
    run (its trial runs are then taken as they are). Raises ``ArxError`` listing the known sweeps."""
    sweeps = list_sweeps(tracking_uri)
    if sweep is None:
        if not sweeps:
            raise ArxError(f"no sweep found in the MLflow store {tracking_uri} (run `arx sweep` first)")
        return sweeps[0]
    for s in sweeps:
        if s.name == sweep or s.parent_run_id == sweep:
            return s
    for s in sweeps:
        if s.experiment_name == sweep:
            return s
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(sweep)
    if exp is not None:
        return SweepRef(exp.experiment_id, exp.name, None, exp.name)
    known = sorted({s.name for s in sweeps} | {s.experiment_name for s in sweeps})
    raise ArxError(f"no sweep {sweep!r} in the MLflow store {tracking_uri}; known sweeps: "
                   + (", ".join(known) if known else "none (run `arx sweep` first)"))


def _convert_params(df: pd.DataFrame) -> pd.DataFrame:
    for col in [c for c in df.columns if c.startswith(PARAM_PREFIX)]:
        s = df[col]
        present = s.dropna()
        present = present[present.astype(str).str.lower() != "none"]
        if not len(present):
            continue
        num = pd.to_numeric(present, errors="coerce")
        if num.notna().all() and not present.astype(str).str.lower().isin(["true", "false"]).any():
            df[col] = pd.to_numeric(s.where(s.astype(str).str.lower() != "none"), errors="coerce")
    return df


def trial_status(tag: str | None = None, run_status: str | None = None, *, error: bool = False, done: bool = False,
                 pruned: bool = False, ended: bool = False) -> str:
    """The one status rule of a trial: ``completed`` | ``failed`` | ``pruned`` | ``running``.

    From MLflow: ``tag`` (``arx.status``) and ``run_status`` (the run's FINISHED / FAILED / KILLED / RUNNING): a
    final tag wins, a run finished without a tag completed, a failed or killed one failed. From Tune: ``error``
    (the trial raised), ``done`` (its final result carries ``arx_done``), ``pruned`` (the rung table stopped it),
    ``ended`` (Tune no longer runs it: ending without a final result is a failure)."""
    if error:
        return "failed"
    if tag not in (None, "running"):
        return str(tag)
    if done:
        return "completed"
    if pruned:
        return "pruned"
    if run_status == "FINISHED" and tag is None:
        return "completed"
    if run_status in ("FAILED", "KILLED") or (run_status is None and ended):
        return "failed"
    return "running"


def _trial_row(run, base: str) -> dict[str, Any]:
    tags = dict(run.data.tags)
    info = run.info
    status = trial_status(tags.get(STATUS_TAG), info.status)
    reason = tags.get(REASON_TAG, "")
    if status == "running" and not reason:
        reason = f"no final status (MLflow run {info.status})"
    row: dict[str, Any] = {
        "trial_id": tags.get(TRIAL_ID_TAG) or info.run_name or info.run_id[:8],
        "regime": tags.get(REGIME_TAG) or run.data.params.get("regime.name") or "?",
        "status": status, "failure_reason": reason, "run_id": info.run_id, "run_name": info.run_name or "",
        "dataset": tags.get(DATASET_TAG, run.data.params.get("dataset.name", "")),
        "backbone": tags.get(BACKBONE_TAG, run.data.params.get("model.backbone", "")),
        "parent_run_id": tags.get(PARENT_TAG, ""), "experiment_id": info.experiment_id,
        "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT,
        "run_link": run_link(base, info.experiment_id, info.run_id),
    }
    if status == "pruned":  # stopped at an early-stopping rung (sweeps/scheduler.py)
        row |= {"rung": pd.to_numeric(tags.get(RUNG_TAG), errors="coerce"),
                "device_seconds_saved": pd.to_numeric(tags.get(SAVED_TAG), errors="coerce")}
    if SANITY_FLAGGED_TAG in tags:
        row |= {"sanity": tags[SANITY_FLAGGED_TAG],
                "sanity_why": "; ".join(f"{k[len(SANITY_PREFIX):]}: {v[len('FLAG: '):]}" for k, v in sorted(tags.items())
                                        if k.startswith(SANITY_PREFIX) and v.startswith("FLAG: "))}
    row.update({k: float(v) for k, v in run.data.metrics.items()})
    row.update({PARAM_PREFIX + k: v for k, v in run.data.params.items()})
    return row


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in BASE_COLUMNS})


def _frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return empty_frame()
    df = pd.DataFrame(rows)
    text = BASE_COLUMNS + SANITY_COLUMNS
    metric_cols = sorted(c for c in df.columns if c not in text and not c.startswith(PARAM_PREFIX))
    param_cols = sorted(c for c in df.columns if c.startswith(PARAM_PREFIX))
    df = df[[c for c in text if c in df.columns] + metric_cols + param_cols]
    for c in metric_cols:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df = _convert_params(df)
    return df.reset_index(drop=True)


def load_runs(tracking_uri: str, experiment_name: str | None = None, parent_run_id: str | None = None,
              all_launches: bool = False, ui_url: str | None = None) -> pd.DataFrame:
    """The trials of a sweep as a DataFrame (one row per trial run; see the module docstring for columns).

    ``experiment_name`` is the sweep name (or a Tune name such as ``default-2``, or None = the newest sweep in
    the store). By default only the children of that sweep's newest parent run are loaded (one launch);
    ``parent_run_id`` selects another launch, ``all_launches=True`` loads every trial run of the experiment.
    An experiment without a parent run yields all its runs that are not sweep parents.
    """
    if parent_run_id is not None:
        client = _client(tracking_uri)
        parent = client.get_run(parent_run_id)
        ref = _ref_from_parent(client.get_experiment(parent.info.experiment_id), parent)
    else:
        ref = resolve_sweep(tracking_uri, experiment_name)
    return load_sweep_runs(tracking_uri, ref, all_launches=all_launches, ui_url=ui_url)


def load_sweep_runs(tracking_uri: str, ref: SweepRef, all_launches: bool = False,
                    ui_url: str | None = None) -> pd.DataFrame:
    """``load_runs`` for an already resolved ``SweepRef``."""
    client = _client(tracking_uri)
    base = ui_base(tracking_uri, ui_url)
    if ref.parent_run_id and not all_launches:
        runs = _search_all(client, [ref.experiment_id], f"tags.`{PARENT_TAG}` = '{ref.parent_run_id}'")
    else:
        runs = [r for r in _search_all(client, [ref.experiment_id])
                if r.data.tags.get(ROLE_TAG) != ROLE_SWEEP]
    runs = [r for r in runs if ORPHAN_TAG not in r.data.tags]  # a killed driver's unsaved trial: never a trial
    runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    df = _frame([_trial_row(r, base) for r in runs])
    df.attrs.update(experiment_id=ref.experiment_id, experiment_name=ref.experiment_name,
                    parent_run_id=ref.parent_run_id, sweep_name=ref.name, objectives=ref.objectives,
                    constraints=ref.constraints, tracking_uri=tracking_uri, source="mlflow", ui_base=base)
    return df


# ---------------------------------------------------------------------------------------------------
# Ray Tune results directory
# ---------------------------------------------------------------------------------------------------
def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _trial_id(res) -> str:
    """The trial id a result reported, else the one in its directory name (``trial_<id>``)."""
    if tid := (res.metrics or {}).get("trial_id"):
        return str(tid)
    name = str(getattr(res, "path", "") or "").rstrip("/").split("/")[-1]
    return name.split("_", 1)[1] if "_" in name else (name or "?")


def _reason(err: BaseException) -> str:
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return (lines[-1].strip() if lines else type(err).__name__)[:2000]


def _result_row(res, pruned: dict, ended: bool) -> dict[str, Any]:
    """One row of the trial table from a Tune ``Result`` (public: ``metrics``, ``config``, ``error``, ``path``)."""
    m, cfg = dict(res.metrics or {}), dict(res.config or {})
    trial_cfg = cfg.get("trial", {}) if isinstance(cfg.get("trial"), dict) else {}
    tid = _trial_id(res)
    status = trial_status(error=res.error is not None, done=bool(m.get("arx_done")), pruned=tid in pruned, ended=ended)
    reason = ""
    if res.error is not None:
        reason = _reason(res.error)
    elif status != "completed" and status != "pruned":
        reason = str(m.get("arx_failed") or ("no final result" if ended else "no final result yet"))
    run_id = str(m.get("mlflow_run_id") or "")
    tracking = cfg.get("tracking") if isinstance(cfg.get("tracking"), dict) else {}
    row: dict[str, Any] = {
        "trial_id": tid, "regime": (trial_cfg.get("regime") or {}).get("name", "?"), "status": status,
        "failure_reason": reason, "run_id": run_id,
        "run_name": str(getattr(res, "path", "") or "").rstrip("/").split("/")[-1],
        "dataset": (trial_cfg.get("dataset") or {}).get("name", ""),
        "backbone": (trial_cfg.get("model") or {}).get("backbone", ""),
        "parent_run_id": tracking.get("parent_run_id", ""), "experiment_id": "", "start_time": pd.NaT,
        "run_link": "",
        "mlflow_pending": int(m.get("arx_tracking_pending") or 0),
    }
    if status == "pruned":
        row |= {"rung": pruned[tid].get("rung"), "device_seconds_saved": pruned[tid].get("saved_device_seconds")}
    if status == "completed":
        row |= {k: float(v) for k, v in m.items() if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool)}
    row |= {PARAM_PREFIX + k: v for k, v in _flatten(trial_cfg).items() if not isinstance(v, (list, dict))}
    return row


def results_frame(results, tracking_uri: str = "", ui_url: str | None = None, pruned: dict | None = None,
                  ended: bool | list[bool] = True, name: str = "") -> pd.DataFrame:
    """The trial table from Tune ``Result`` objects (a ``ResultGrid``): status by ``trial_status`` (``pruned``:
    the rung table's pruned trials, ``sweeps/rung_table.py``; ``ended``: Tune no longer runs the trial, one flag
    or one per result); only completed trials carry objective values; ``mlflow_pending`` counts the MLflow writes
    a trial's outbox still holds. No run links (a Tune result has no experiment id)."""
    results = list(results)
    ends = ended if isinstance(ended, list) else [ended] * len(results)
    df = _frame([_result_row(r, pruned or {}, e) for r, e in zip(results, ends)])
    df.attrs.update(experiment_id="", experiment_name=name, parent_run_id=None, sweep_name=name, objectives=None,
                    constraints=[], tracking_uri=tracking_uri, source="tune", ui_base=ui_base(tracking_uri, ui_url))
    return df


def _tune_analysis(path: Path):
    """Tune's ``ExperimentAnalysis`` of ``path``, else of the newest experiment directory inside it."""
    from ray.tune import ExperimentAnalysis

    try:
        return ExperimentAnalysis(str(path)), path
    except Exception as first:  # noqa: BLE001 - not an experiment itself: look one level down
        subdirs = sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                         reverse=True) if path.is_dir() else []
        for sub in subdirs:
            try:
                return ExperimentAnalysis(str(sub)), sub
            except Exception:  # noqa: BLE001
                continue
        raise ArxError(f"{path}: not a Ray Tune experiment directory ({str(first).splitlines()[0][:200]})") from None


def load_tune_results(path: str | os.PathLike, ui_url: str | None = None, tracking_uri: str = "") -> pd.DataFrame:
    """The trials of a Tune experiment directory (``RESULTS/ray/<sweep>``, or a directory holding such
    experiments: the newest is taken) as the same table as ``load_runs``, read through Tune's public
    ``ExperimentAnalysis`` and ``ResultGrid``; a trial Tune still runs (not TERMINATED / ERROR) is ``running``."""
    from ray.tune import ResultGrid

    analysis, exp_dir = _tune_analysis(Path(path))
    grid = ResultGrid(analysis)
    ended = [t.status in ("TERMINATED", "ERROR") for t in analysis.trials]
    return results_frame([grid[i] for i in range(len(grid))], tracking_uri, ui_url, ended=ended, name=exp_dir.name)


def completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "completed"] if "status" in df.columns else df

