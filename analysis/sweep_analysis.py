"""The numbers of a sweep report: fronts, ranks, hypervolumes, knee, constrained picks, per-regime summary.

``analyse(df)`` takes the trial table (``analysis.runs``) and returns a ``SweepAnalysis``; everything is
computed by ``analysis.pareto`` (and ``analysis.seeds`` where a setting ran with several seeds). The report's
sections (``analysis.sections``) and figures (``analysis.figures``) only present these numbers.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Sequence

import numpy as np
import pandas as pd

from analysis import pareto, seeds
from analysis.pareto import NearBest, Objective, Pick, Threshold
from analysis.html_parts import fmt as _fmt
from analysis.runs import PARAM_PREFIX

DEFAULT_OBJECTIVES = ["acc/top1", "robust/pgd", "explain/box_iou"]
ACCURACY_TOL = 0.01          # "within 1 point" of accuracy (accuracies are fractions)
REFERENCE_REGIME = "standard"
# not settings: names, locations, and ``effective.*`` (what a trial used, logged at its end: pruned trials lack it,
# which made every one of them look like a varying setting)
_SKIP_SETTING = re.compile(r"(^name$|^regime\.name$|^effective\.|path|_dir$|\.dir$|uri|tracking|storage)")


@dataclass(frozen=True)
class PickSpec:
    """A constrained pick to show in "choosing settings": best ``target`` subject to ``constraints``."""
    target: str
    constraints: tuple[Threshold | NearBest, ...] = ()
    direction: str | None = None
    label: str | None = None


@dataclass
class SweepAnalysis:
    objectives: list[Objective]
    trials: pd.DataFrame                 # every trial (+ "settings", "rank", "on_front" columns)
    valid: pd.DataFrame                  # completed trials with every objective present (front candidates)
    failed: pd.DataFrame                 # failed / unfinished trials
    missing: pd.DataFrame                # completed trials lacking an objective value (excluded from fronts)
    front: pd.DataFrame                  # rank-1 trials
    ref_point: np.ndarray | None
    hypervolume: float
    hv_by_regime: dict[str, float]
    pair_fronts: dict[tuple[str, str], np.ndarray]   # (x, y) -> mask over ``valid``
    knee: pareto.Knee | None
    picks: list[tuple[PickSpec, Pick]]
    regime_summary: pd.DataFrame
    setting_cols: list[str]
    notes: list[str] = field(default_factory=list)
    pruned: pd.DataFrame | None = None   # stopped early by the sweep's scheduler (never on a front)
    by_setting: bool = False             # seeds repeat: ``valid``/``front`` hold setting means (analysis/seeds.py)

    @property
    def keys(self) -> list[str]:
        return [o.key for o in self.objectives]


# ---------------------------------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------------------------------
def choose_objectives(df: pd.DataFrame, objectives: Any = None, notes: list[str] | None = None) -> list[Objective]:
    """``objectives`` as given, else the sweep's ``arx.objectives`` (``df.attrs``), else the defaults present.

    Objectives no trial has a value for are left out (with a note)."""
    notes = notes if notes is not None else []
    if isinstance(objectives, str):      # "acc/top1,robust/pgd:max" (CLI form; direction optional)
        objectives = [dict(zip(("key", "direction"), part.strip().split(":", 1)))
                      for part in objectives.split(",") if part.strip()]
    if objectives is None:
        objectives = df.attrs.get("objectives") or None
    if objectives is None:
        objectives = [k for k in DEFAULT_OBJECTIVES if k in df.columns]
        if not objectives:
            objectives = [c for c in df.columns if "/" in c and c.split("/")[0] in ("acc", "robust", "explain")][:3]
        if objectives:
            notes.append("the sweep records no objectives; using " + ", ".join(objectives))
    objs = pareto.resolve_objectives(objectives) if objectives else []
    kept = []
    for o in objs:
        if o.key in df.columns and pd.to_numeric(df[o.key], errors="coerce").notna().any():
            kept.append(o)
        else:
            notes.append(f"objective {o.key} has no value in any trial; it is left out of the analysis")
    return kept


def _settings_columns(df: pd.DataFrame) -> list[str]:
    cols = []
    for c in df.columns:
        if not c.startswith(PARAM_PREFIX) or _SKIP_SETTING.search(c[len(PARAM_PREFIX):]):
            continue
        vals = df[c].dropna().astype(str)
        if vals.nunique() > 1 or (len(vals) and len(vals) < len(df)):
            cols.append(c)
    return cols


def _settings_text(row: pd.Series, cols: Sequence[str]) -> str:
    parts = []
    for c in cols:
        v = row.get(c)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        parts.append(f"{c[len(PARAM_PREFIX):]}={_fmt(v)}")
    return ", ".join(parts)


def default_picks(objs: list[Objective], completed: pd.DataFrame) -> list[PickSpec]:
    """Best of each other objective with accuracy within 1 point of the best standard trial (or of the best
    trial when the sweep has no standard trial); with one objective, just its best."""
    keys = [o.key for o in objs]
    acc = next((k for k in keys if k.startswith("acc/")), None)
    if len(objs) == 1 or acc is None:
        return [PickSpec(o.key, (), o.direction, f"best {o.key}") for o in objs]
    regimes = set(completed.get("regime", pd.Series(dtype=str)).astype(str))
    among = {"regime": REFERENCE_REGIME} if REFERENCE_REGIME in regimes else None
    who = f"the best {REFERENCE_REGIME} trial" if among else "the best trial"
    return [PickSpec(o.key, (NearBest(acc, ACCURACY_TOL, among=among),), o.direction,
                     f"best {o.key} with {acc} within {ACCURACY_TOL * 100:g} point of {who}")
            for o in objs if o.key != acc]


def _prepared(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``status``, ``regime`` and the sanity marker filled in."""
    df = _mark_flagged(df.copy())
    if "status" not in df.columns:
        df["status"] = "completed"
    if "regime" not in df.columns:
        df["regime"] = "?"
    df["regime"] = df["regime"].fillna("?").astype(str)
    return df


def _candidates(df, keys, setting_cols, exclude_flagged, notes):
    """(valid, missing, by_setting, excluded): the front candidates (setting means when seeds repeat), the
    completed trials lacking an objective, the per-setting table (or None) and the excluded-trial mask."""
    completed = df[df["status"] == "completed"]
    if keys:
        has_all = completed[keys].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    else:
        has_all = pd.Series(False, index=completed.index)
    excluded = completed[SANITY_MARK] != "" if exclude_flagged else pd.Series(False, index=completed.index)
    valid = completed[has_all & ~excluded]
    if excluded.any():
        notes.append(f"{int(excluded.sum())} trial(s) flagged by the gradient-masking checks are excluded from the "
                     "fronts (see Robustness sanity)")
    by_setting = seeds.aggregate(valid, keys, setting_cols) if keys else None
    if by_setting is not None:
        by_setting["settings"] = [seeds.settings_text(r, setting_cols, _settings_text) for _, r in by_setting.iterrows()]
        repeated = int((by_setting["n"] > 1).sum())
        notes.append(f"{repeated} setting(s) ran with several seeds: fronts, hypervolumes, the knee and the picks use "
                     "each setting's mean over its seeds (error bars: ± 1 standard deviation; n = seeds); every "
                     "trial is listed under All trials")
        by_setting[SANITY_MARK] = [" ".join(sorted(set(df.loc[m, SANITY_MARK]) - {""})) for m in by_setting["members"]]
        valid = by_setting
    return valid, completed[~has_all], by_setting, excluded


@dataclass
class _Fronts:
    valid: pd.DataFrame
    front: pd.DataFrame
    ref_point: np.ndarray | None = None
    hypervolume: float = math.nan
    hv_by_regime: dict = field(default_factory=dict)
    pair_fronts: dict = field(default_factory=dict)
    knee: pareto.Knee | None = None


def _fronts(df: pd.DataFrame, valid: pd.DataFrame, objs: list[Objective], by_setting: bool, notes) -> _Fronts:
    """Ranks (written into ``df`` per trial), the front, hypervolumes, the pair fronts and the knee."""
    df["rank"] = 0
    df["on_front"] = False
    if not len(valid) or not objs:
        if objs:
            notes.append("no completed trial has every objective, so there is no Pareto front")
        return _Fronts(valid, valid.iloc[0:0])
    valid = _ranked(df, valid, pareto.pareto_ranks(valid, objs), by_setting)
    ref = pareto.reference_point(valid, objs)
    pairs = {(objs[a].key, objs[b].key): pareto.non_dominated(valid, [objs[a], objs[b]])
             for a, b in combinations(range(len(objs)), 2)}
    if len(valid) == 1:
        notes.append("only one trial has every objective: it is the front on its own, and its hypervolume "
                     "against the worst observed values (itself) is 0")
    return _Fronts(valid, valid[valid["on_front"]], ref, pareto.hypervolume(valid, objs, ref=ref),
                   {r: pareto.hypervolume(g, objs, ref=ref) for r, g in valid.groupby("regime")}, pairs,
                   pareto.knee_point(valid, objs))


def analyse(df: pd.DataFrame, objectives: Any = None, picks: Sequence[PickSpec] | None = None,
            exclude_flagged: bool = False) -> SweepAnalysis:
    """All the numbers of a report (see the module docstring of ``analysis.pareto`` for the conventions);
    ``exclude_flagged``: trials flagged by the gradient-masking checks stay off fronts, ranks and picks."""
    notes: list[str] = []
    df = _prepared(df)
    objs = choose_objectives(df, objectives, notes)
    keys = [o.key for o in objs]
    setting_cols = _settings_columns(df)
    df["settings"] = [_settings_text(r, setting_cols) for _, r in df.iterrows()] if len(df) else []
    completed = df[df["status"] == "completed"]
    valid, missing, by_setting, excluded = _candidates(df, keys, setting_cols, exclude_flagged, notes)
    f = _fronts(df, valid, objs, by_setting is not None, notes)
    if len(objs) == 1:
        notes.append(f"one objective ({keys[0]}): the front is simply its best trial(s), there is no trade-off "
                     "to plot, and the hypervolume is the distance from the best to the worst value")
    if not keys:
        notes.append("no objective has any value: nothing to rank")
    if len(missing):
        notes.append(f"{len(missing)} completed trial(s) lack an objective value and are left out of the fronts "
                     "(listed under failed and incomplete trials)")
    specs = list(picks) if picks is not None else (default_picks(objs, completed) if objs else [])
    among = f.valid if by_setting is not None else completed[~excluded]
    chosen = [(spec, pareto.constrained_pick(among, spec.target, spec.constraints, spec.direction)) for spec in specs]
    failed = df[(df["status"] != "completed") & (df["status"] != "pruned")]
    return SweepAnalysis(objs, df, f.valid, failed, missing, f.front, f.ref_point, f.hypervolume, f.hv_by_regime,
                         f.pair_fronts, f.knee, chosen, _regime_summary(df, f.valid, objs, f.hv_by_regime),
                         setting_cols, notes, df[df["status"] == "pruned"], by_setting is not None)


def _ranked(df: pd.DataFrame, cands: pd.DataFrame, ranks: np.ndarray, by_setting: bool) -> pd.DataFrame:
    """``cands`` with ``rank``/``on_front``; every trial of ``df`` gets its own (or its setting's) rank."""
    cands = cands.assign(rank=ranks, on_front=ranks == 1)
    if not by_setting:
        df.loc[cands.index, ["rank", "on_front"]] = cands[["rank", "on_front"]]
        return df.loc[cands.index]
    for _, r in cands.iterrows():
        df.loc[r["members"], "rank"] = r["rank"]
        df.loc[r["members"], "on_front"] = r["on_front"]
    return cands


def compare_link(a: SweepAnalysis) -> str:
    """The MLflow UI's compare view of the front's runs (every seed of a front setting), '' without run ids;
    the route and its JSON query as MLflow's own UI builds them (``getCompareRunPageRoute``)."""
    members = [i for idx, r in a.front.iterrows() for i in (r["members"] if a.by_setting else [idx])]
    rows = a.trials.loc[members] if members else a.trials.iloc[0:0]
    rows = rows[rows.get("run_id", pd.Series("", index=rows.index)).fillna("").astype(bool)] if len(rows) else rows
    if not len(rows) or not str(rows.iloc[0].get("run_link") or ""):
        return ""
    base = str(rows.iloc[0]["run_link"]).split("/#/")[0]
    runs = json.dumps(list(rows["run_id"].astype(str)), separators=(",", ":"))
    exps = json.dumps(sorted(set(rows["experiment_id"].astype(str))), separators=(",", ":"))
    return f"{base}/#/compare-runs?runs={runs}&experiments={exps}"


def _regime_summary(df, valid, objs, hv_by_regime) -> pd.DataFrame:
    rows = []
    groups = [(r, g) for r, g in df.groupby("regime")] + ([("all", df)] if df["regime"].nunique() > 1 else [])
    for regime, g in groups:
        v = valid[valid["regime"] == regime] if regime != "all" else valid
        row = {"regime": regime, "trials": len(g), "completed": int((g["status"] == "completed").sum()),
               "pruned": int((g["status"] == "pruned").sum()),
               "failed": int((~g["status"].isin(["completed", "pruned"])).sum()), "on front": int(v["on_front"].sum()) if len(v) else 0}
        for o in objs:
            vals = pd.to_numeric(v[o.key], errors="coerce").dropna() if len(v) else pd.Series(dtype=float)
            row[f"best {o.key}"] = (vals.max() if o.direction == "max" else vals.min()) if len(vals) else math.nan
            row[f"median {o.key}"] = vals.median() if len(vals) else math.nan
        if regime == "all":
            row["hypervolume"] = pareto.hypervolume(valid, objs) if len(valid) and objs else math.nan
        else:
            row["hypervolume"] = hv_by_regime.get(regime, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)




SANITY_MARK = "masking?"


def _mark_flagged(df: pd.DataFrame) -> pd.DataFrame:
    """Adds the column ``masking?``: "⚠ <checks>" for trials whose gradient-masking checks flagged, else ""."""
    col = df["sanity"] if "sanity" in df.columns else pd.Series("", index=df.index)
    checks = col.fillna("").astype(str).replace("none", "")
    df[SANITY_MARK] = ["\u26a0 " + c if c else "" for c in checks]
    return df


