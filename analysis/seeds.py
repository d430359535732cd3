"""Seeds of one setting, aggregated (issue #19.2).

Trials whose settings differ only in ``seed`` are one *setting*: the report ranks settings, not seeds. When
at least one setting of a sweep ran with more than one seed, ``aggregate`` returns one row per setting (regime
+ every setting column but the seed) with, for each objective, the mean over its seeds in the objective's own
column, the sample standard deviation (ddof 1; NaN for one seed) in ``"<key> sd"`` and the number of seeds in
``n``. Fronts, hypervolumes, the knee and the picks are then computed over these means, and the plots draw the
standard deviations as error bars. A setting row's index is the index of its first trial (so links and CAM
galleries point at a real run); ``trial_id`` lists every trial of the setting and ``settings`` leaves the seed
out. Without repeated seeds ``aggregate`` returns None and the report stays per trial.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from analysis.runs import PARAM_PREFIX

SEED_COL = PARAM_PREFIX + "seed"
SD_SUFFIX = " sd"


def sd_col(key: str) -> str:
    return key + SD_SUFFIX


def setting_key_cols(setting_cols: Sequence[str]) -> list[str]:
    """The columns that define a setting: the regime and every varying setting but the seed."""
    return ["regime", *(c for c in setting_cols if c != SEED_COL)]


def aggregate(valid: pd.DataFrame, keys: Sequence[str], setting_cols: Sequence[str]) -> pd.DataFrame | None:
    """One row per setting (mean, ``<key> sd``, ``n`` per objective), or None when no setting repeats."""
    if SEED_COL not in setting_cols or not len(valid):
        return None
    by = setting_key_cols(setting_cols)
    groups = list(valid.groupby(valid[by].astype(str).apply(tuple, axis=1), sort=False))
    if all(len(g) == 1 for _, g in groups):
        return None
    rows = []
    for _, g in groups:
        row = g.iloc[0].copy()
        vals = g[list(keys)].apply(pd.to_numeric, errors="coerce")
        for k in keys:
            row[k] = float(vals[k].mean())
            row[sd_col(k)] = float(vals[k].std(ddof=1)) if len(g) > 1 else float("nan")
        row["n"] = len(g)
        row["trial_id"] = ", ".join(g["trial_id"].astype(str))
        row["seeds"] = ", ".join(str(s) for s in g[SEED_COL].tolist()) if SEED_COL in g else ""
        row["members"] = list(g.index)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.index = [r["members"][0] for r in rows]
    return out


def settings_text(row: pd.Series, setting_cols: Sequence[str], text_of) -> str:
    """``text_of(row, cols)`` without the seed column."""
    return text_of(row, [c for c in setting_cols if c != SEED_COL])
