"""Per-image results of trials (the ``per_image.parquet`` artifact) and the common-correct comparison.

The at-feature-map-smoothing protocol scores attribution metrics on images that *all compared models*
classify correctly. Each trial's logged attribution metrics (``Family.correct_only`` keys) use the images
*it* classifies correctly, so two regimes are scored on different images; ``common_correct`` recomputes each
trial's value on the intersection of correctly classified images across the compared trials (same dataset,
dataset seed and evaluation seed, i.e. the same test split and seeded subset) and averages per regime, next to
the regime's mean of the logged values. ``ssim_vg`` is recomputed as the mean over σ of per-σ means (its
``_ssim_vg/<i>`` columns), ``ros_vg`` as ``log10`` of the mean unless the trial logged raw ROS.
"""
from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
ARTIFACT = "per_image.parquet"
SAME_IMAGES = ["dataset", "params.dataset.seed", "params.dataset.test_size", "params.evaluation.seed",
               "params.evaluation.num_images"]


def load_tables(tracking_uri: str, run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """``run_id -> per-image table`` for the runs that have the artifact (others are left out, logged)."""
    from mlflow.tracking import MlflowClient

    client, out = MlflowClient(tracking_uri=tracking_uri), {}
    with tempfile.TemporaryDirectory(prefix="arx_per_image_") as tmp:
        for rid in run_ids:
            try:
                if ARTIFACT not in {f.path for f in client.list_artifacts(rid)}:
                    continue
                out[rid] = pd.read_parquet(client.download_artifacts(rid, ARTIFACT, str(Path(tmp) / rid)))
            except Exception as e:  # an unreachable artifact store must not sink the analysis
                log.warning("per-image table of run %s not available: %s", rid, e)
    return out


@dataclass
class CommonCorrect:
    table: pd.DataFrame      # regime, key, trials, logged (mean logged value), common (mean on common images), images
    images: int              # images every compared trial classifies correctly
    trials: int              # compared trials (those with a per-image table in the largest comparable group)
    note: str = ""


def _value(key: str, t: pd.DataFrame, raw_ros: bool) -> tuple[float, int]:
    """A trial's mean of ``key`` over the rows of ``t`` (its definition's reduction) and the images used."""
    if key == "explain/ssim_vg" and any(c.startswith("_ssim_vg/") for c in t.columns):
        per_sigma = [t[c].mean() for c in t.columns if c.startswith("_ssim_vg/") and t[c].notna().any()]
        return (sum(per_sigma) / len(per_sigma) if per_sigma else math.nan), int(t[key].notna().sum())
    v = t[key].dropna()
    m = v.mean() if len(v) else math.nan
    if key == "explain/ros_vg" and not raw_ros and len(v):
        m = math.log10(m) if m > 0 else -math.inf
    return m, len(v)


def _group(trials: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in SAME_IMAGES if c in trials.columns]
    if not cols:
        return trials
    keyed = trials[cols].astype(str)
    biggest = keyed.value_counts().index[0]
    return trials[(keyed == pd.Series(biggest, index=cols)).all(axis=1)]


def common_correct(trials: pd.DataFrame, tables: dict[str, pd.DataFrame], keys: list[str]) -> CommonCorrect | None:
    """The comparison over completed ``trials`` (``load_runs`` rows) with tables; None if fewer than two."""
    have = trials[trials["run_id"].isin(tables)]
    group = _group(have)
    if len(group) < 2:
        return None
    correct = [set(tables[r].loc[tables[r]["label"] == tables[r]["pred"], "index"]) for r in group["run_id"]]
    common = set.intersection(*correct)
    keys = [k for k in keys if all(k in tables[r].columns for r in group["run_id"])]
    rows = []
    for regime, part in group.groupby("regime", sort=True):
        for key in keys:
            vals, used, logged = [], [], []
            for _, trial in part.iterrows():
                t = tables[trial["run_id"]]
                raw = str(trial.get("params.evaluation.explain.ros_log10", "True")) == "False"
                v, n = _value(key, t[t["index"].isin(common)], raw)
                vals.append(v)
                used.append(n)
                logged.append(pd.to_numeric(trial.get(key), errors="coerce"))
            rows.append({"regime": regime, "key": key, "trials": len(part), "logged": pd.Series(logged).mean(),
                         "common": pd.Series(vals).mean(), "images": min(used)})
    note = "" if len(group) == len(have) else (f"{len(have) - len(group)} trial(s) evaluated other images "
                                               "(dataset, split or seed) and are left out")
    return CommonCorrect(pd.DataFrame(rows), len(common), len(group), note)
