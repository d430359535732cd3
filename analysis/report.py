"""One self-contained HTML report per sweep (+ PNGs beside it), also logged to the sweep's parent MLflow run.

``write_report(sweep, tracking_uri, out_dir)`` loads the sweep's trials (``analysis.runs``), computes the
Pareto analysis (``analyse``: fronts, ranks, hypervolumes, knee, constrained picks, all from
``analysis.pareto``), draws the figures (``analysis.plots``) and writes ``out_dir/report.html``: plotly.js
is embedded inline once (no CDN, works offline), CAM galleries are embedded as data URIs. The report
says plainly what it could not do (one objective, a single trial, every trial failed, no CAM artifacts)
instead of failing. ``write_frame_report`` does the same from a DataFrame (e.g. ``load_tune_results``).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from analysis import pareto, seeds
from analysis.pareto import NearBest, Objective, Pick, Threshold
from analysis.runs import PARAM_PREFIX, SweepRef, load_sweep_runs, resolve_sweep, run_link, ui_base

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
DEFAULT_OBJECTIVES = ["acc/top1", "robust/pgd", "explain/box_iou"]
ACCURACY_TOL = 0.01          # "within 1 point" of accuracy (accuracies are fractions)
REFERENCE_REGIME = "standard"
MAX_GALLERY = 6
_SKIP_SETTING = re.compile(r"(^name$|^regime\.name$|path|_dir$|\.dir$|uri|tracking|storage)")


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


def analyse(df: pd.DataFrame, objectives: Any = None, picks: Sequence[PickSpec] | None = None,
            exclude_flagged: bool = False) -> SweepAnalysis:
    """All the numbers of a report (see the module docstring of ``analysis.pareto`` for the conventions);
    ``exclude_flagged``: trials flagged by the gradient-masking checks stay off fronts, ranks and picks."""
    notes: list[str] = []
    df = _mark_flagged(df.copy())
    if "status" not in df.columns:
        df["status"] = "completed"
    if "regime" not in df.columns:
        df["regime"] = "?"
    df["regime"] = df["regime"].fillna("?").astype(str)
    objs = choose_objectives(df, objectives, notes)
    keys = [o.key for o in objs]
    setting_cols = _settings_columns(df)
    df["settings"] = [_settings_text(r, setting_cols) for _, r in df.iterrows()] if len(df) else []
    done = df["status"] == "completed"
    failed = df[~done & (df["status"] != "pruned")]
    completed = df[done]
    if keys:
        has_all = completed[keys].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    else:
        has_all = pd.Series(False, index=completed.index)
    excluded = completed[SANITY_MARK] != "" if exclude_flagged else pd.Series(False, index=completed.index)
    valid = completed[has_all & ~excluded]
    missing = completed[~has_all]
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
    df["rank"] = 0
    df["on_front"] = False
    ref_point, hv, hv_by_regime, pair_fronts, knee = None, math.nan, {}, {}, None
    front = valid.iloc[0:0]
    if len(valid) and keys:
        valid = _ranked(df, valid, pareto.pareto_ranks(valid, objs), by_setting is not None)
        front = valid[valid["on_front"]]
        ref_point = pareto.reference_point(valid, objs)
        hv = pareto.hypervolume(valid, objs, ref=ref_point)
        hv_by_regime = {r: pareto.hypervolume(g, objs, ref=ref_point) for r, g in valid.groupby("regime")}
        for a, b in combinations(range(len(objs)), 2):
            pair = [objs[a], objs[b]]
            pair_fronts[(objs[a].key, objs[b].key)] = pareto.non_dominated(valid, pair)
        knee = pareto.knee_point(valid, objs)
        if len(valid) == 1:
            notes.append("only one trial has every objective: it is the front on its own, and its hypervolume "
                         "against the worst observed values (itself) is 0")
    elif keys:
        notes.append("no completed trial has every objective, so there is no Pareto front")
    if len(objs) == 1:
        notes.append(f"one objective ({keys[0]}): the front is simply its best trial(s), there is no trade-off "
                     "to plot, and the hypervolume is the distance from the best to the worst value")
    if not keys:
        notes.append("no objective has any value: nothing to rank")
    if len(missing):
        notes.append(f"{len(missing)} completed trial(s) lack an objective value and are left out of the fronts "
                     "(listed under failed and incomplete trials)")
    specs = list(picks) if picks is not None else (default_picks(objs, completed) if objs else [])
    chosen = []
    for spec in specs:
        pk = pareto.constrained_pick(valid if by_setting is not None else completed[~excluded], spec.target,
                                     spec.constraints, spec.direction)
        chosen.append((spec, pk))
    summary = _regime_summary(df, valid, objs, hv_by_regime)
    return SweepAnalysis(objs, df, valid, failed, missing, front, ref_point, hv, hv_by_regime, pair_fronts, knee,
                         chosen, summary, setting_cols, notes, df[df["status"] == "pruned"], by_setting is not None)


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


def _row(a: SweepAnalysis, idx: Any) -> pd.Series:
    """A ranked row: the setting (means over seeds) when the analysis is by setting, else the trial."""
    return a.valid.loc[idx] if idx in a.valid.index else a.trials.loc[idx]


def _objective_cols(a: SweepAnalysis) -> list[str]:
    """The objective columns of a front table: with seeds aggregated, each mean followed by its sd, then n."""
    if not a.by_setting:
        return list(a.keys)
    return [c for k in a.keys for c in (k, seeds.sd_col(k))] + ["n"]


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


# ---------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _figures(a: SweepAnalysis, out_dir: Path, png: bool = True) -> tuple[list[tuple[str, str, Any]], list[Path]]:
    """(section, caption, plotly figure) list and the PNGs written (none with ``png=False``)."""
    from analysis import plots

    figs: list[tuple[str, str, Any]] = []
    pngs: list[Path] = []
    if not len(a.valid) or not a.objectives:
        return figs, pngs

    def save(draw, *args, **kw) -> None:
        if png:
            pngs.append(draw(*args, **kw))

    colors = plots.regime_colors(a.trials["regime"].unique())
    hover = [*a.keys, SANITY_MARK] if (a.valid[SANITY_MARK] != "").any() else a.keys
    valid = a.valid
    knee = a.knee.index if a.knee else None
    dirs = {o.key: o.direction for o in a.objectives}
    if len(a.objectives) == 1:
        k = a.keys[0]
        mask = valid["on_front"].to_numpy(bool)
        figs.append(("fronts", f"{k} per trial", plots.objective_plotly(valid, k, dirs[k], mask, colors, hover)))
        save(plots.objective_png, valid, k, dirs[k], mask, colors, out_dir / f"objective_{_slug(k)}.png")
    for (x, y), mask in a.pair_fronts.items():
        cap = (f"{y} vs {x}: the front of this pair drawn as a line, trials off it faded; the star is the knee "
               "of the full front")
        if a.pruned is not None and len(a.pruned):
            cap += "; grey crosses: pruned trials at their last rung (rung-subset values, never on a front)"
        figs.append(("fronts", cap, plots.front_2d_plotly(valid, x, y, dirs[x], dirs[y], mask, colors, knee, hover,
                                                          pruned=a.pruned)))
        save(plots.front_2d_png, valid, x, y, dirs[x], dirs[y], mask, colors,
             out_dir / f"front_{_slug(x)}__{_slug(y)}.png", knee, pruned=a.pruned)
    if len(a.objectives) >= 3:
        keys3 = a.keys[:3]
        on = valid["on_front"].to_numpy(bool) if len(a.objectives) == 3 else pareto.non_dominated(
            valid, a.objectives[:3])
        cap = "the first three objectives in 3-D (drag to rotate); front trials opaque"
        figs.append(("fronts3d", cap, plots.front_3d_plotly(valid, keys3, [dirs[k] for k in keys3], on, colors,
                                                            knee, hover)))
        save(plots.front_3d_png, valid, keys3, [dirs[k] for k in keys3], on, colors, out_dir / "front_3d.png", knee)
    if len(a.front):
        cols = [("regime", "regime")] + [(c, c[len(PARAM_PREFIX):]) for c in a.setting_cols][:10] \
            + [(k, k) for k in a.keys]
        figs.append(("choosing", "Pareto-optimal settings: one line per front trial",
                     plots.parallel_plotly(a.front, cols, colors)))
        save(plots.parallel_png, a.front, cols, colors, out_dir / "parallel_front.png")
    if a.hv_by_regime:
        hv = {r: a.hv_by_regime[r] for r in sorted(a.hv_by_regime)}
        overall = a.hypervolume if len(hv) > 1 else None
        figs.append(("regimes", "hypervolume of each regime's trials against the common reference point",
                     plots.hypervolume_plotly(hv, colors, overall)))
        save(plots.hypervolume_png, hv, colors, out_dir / "hypervolume_per_regime.png", overall)
    return figs, pngs


def _gallery(a: SweepAnalysis, tracking_uri: str | None, out_dir: Path, tmp: Path,
             png: bool = True) -> tuple[list[tuple[str, Path]], Path | None]:
    """Download ``cam_gallery.png`` of the chosen trials (knee, picks, best per objective), if present, into
    ``tmp``; with ``png`` also stack them into ``out_dir/cam_gallery.png``."""
    chosen: list[tuple[str, Any]] = []
    if a.knee is not None:
        chosen.append(("knee", a.knee.index))
    for spec, pk in a.picks:
        if pk.found:
            chosen.append((spec.label or pk.describe(), pk.index))
    for o in a.objectives:
        if len(a.valid):
            v = pd.to_numeric(a.valid[o.key], errors="coerce")
            chosen.append((f"best {o.key}", v.idxmax() if o.direction == "max" else v.idxmin()))
    seen, items = {}, []
    for why, idx in chosen:
        if idx in seen:
            seen[idx].append(why)
        elif len(seen) < MAX_GALLERY:
            seen[idx] = [why]
    if not tracking_uri or not seen:
        return items, None
    quiet = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"   # no progress bars in a report
    try:
        items = _download_galleries(a, tracking_uri, seen, tmp)
    finally:
        if quiet is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet
    if not items or not png:
        return items, None
    from analysis import plots

    return items, plots.cam_gallery_png(items, out_dir / "cam_gallery.png")


def _download_galleries(a: SweepAnalysis, tracking_uri: str, seen: dict, tmp: Path) -> list[tuple[str, Path]]:
    items = []
    for idx, whys in seen.items():
        row = a.trials.loc[idx]
        run_id = row.get("run_id")
        if not run_id:
            continue
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
            names = {f.path for f in client.list_artifacts(run_id)}
            if "cam_gallery.png" not in names:
                continue
            dst = tmp / str(run_id)
            dst.mkdir(parents=True, exist_ok=True)
            path = Path(client.download_artifacts(run_id, "cam_gallery.png", str(dst)))
        except Exception as e:  # an unreachable artifact store must not sink the report
            log.warning("CAM gallery of run %s not available: %s", run_id, e)
            continue
        items.append((f"trial {row['trial_id']} ({row['regime']}): " + "; ".join(whys), path))
    return items


# ---------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:16px 24px;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:1.8em}
table{border-collapse:collapse;font-size:0.86em;margin:8px 0 16px} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#777}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px;margin-bottom:12px}
.grid.wide{grid-template-columns:1fr}
.fig{border:1px solid #eee;border-radius:6px;padding:6px} .fig p{margin:2px 6px;font-size:0.85em;color:#555}
.cam img{max-width:100%;border:1px solid #ddd} code{background:#f4f4f4;padding:0 3px}
"""

# plots are drawn while the page is parsed; fit them to their final boxes once everything is laid out
RESIZE = """<script>window.addEventListener('load', function () {
  document.querySelectorAll('.plotly-graph-div').forEach(function (d) { Plotly.Plots.resize(d); });
});</script>"""


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, pd.Timestamp):
        return "" if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def _e(v: Any) -> str:
    return html.escape(_fmt(v))


def _link(url: str, text: str) -> str:
    if not url:
        return html.escape(text)
    return f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(text)}</a>'


def _table(df: pd.DataFrame, cols: Sequence[str], link_col: str | None = None, id_col: str = "trial_id") -> str:
    if not len(df):
        return '<p class="muted">(none)</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r.get(c)
            if c == id_col and link_col:
                cells.append(f"<td>{_link(str(r.get(link_col) or ''), _fmt(v))}</td>")
            else:
                num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                cells.append(f'<td class="num">{_e(v)}</td>' if num else f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fig_html(figs: list[tuple[str, str, Any]], section: str, start: int) -> tuple[str, int]:
    parts = []
    n = start
    for sec, cap, fig in figs:
        if sec != section:
            continue
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"arx-plot-{n}",
                          config={"displaylogo": False, "responsive": True})
        parts.append(f'<div class="fig">{div}<p>{html.escape(cap)}</p></div>')
        n += 1
    if not parts:
        return "", n
    wide = " wide" if section != "fronts" else ""
    return f'<div class="grid{wide}">{"".join(parts)}</div>', n


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _common_html(cc) -> str:
    """The common-correct comparison (``analysis.per_image.common_correct``) as a section."""
    out = ['<h2 id="common-correct">Attribution metrics on commonly correct images</h2>']
    if cc is None:
        return out[0] + ('<p class="muted">No comparison: fewer than two completed trials with a '
                         "<code>per_image.parquet</code> artifact over the same images.</p>")
    out.append(f"<p>Attribution metrics admit only correctly classified images, so each trial's logged value uses "
               f"its own correct images. Here each trial is re-scored on the <b>{cc.images}</b> test images that "
               f"all <b>{cc.trials}</b> compared trials classify correctly (same dataset, split and seed; the "
               "at-feature-map-smoothing protocol), then averaged per regime next to the regime's mean logged "
               "value; <i>images</i> is the fewest of them a trial's metric admitted.</p>")
    if cc.note:
        out.append(f'<div class="note">{html.escape(cc.note)}</div>')
    out.append(_table(cc.table, ["regime", "key", "trials", "logged", "common", "images"], id_col=""))
    return '<section id="common-correct-section">' + "".join(out) + "</section>"


def _pruned_html(pruned: pd.DataFrame) -> list[str]:
    """Trials stopped at a rung by the multi-objective successive halving (faded; never on a front)."""
    saved = pd.to_numeric(pruned.get("device_seconds_saved"), errors="coerce").sum() if "device_seconds_saved" in pruned else math.nan
    return [f'<h2>Pruned trials</h2><div class="pruned" style="opacity:0.6"><p class="muted">{len(pruned)} trial(s) '
            f"stopped at an early-stopping rung (not on any front; their objectives exist only on the rung subset); "
            f"~{saved:.0f} device-seconds saved.</p>",
            _table(pruned, [c for c in ["trial_id", "regime", "rung", "device_seconds_saved", "settings"]
                            if c in pruned.columns or c == "settings"], link_col="run_link"), "</div>"]


def _overhead_line(trials: pd.DataFrame) -> str | None:
    """The sweep's trial overhead (``cost/overhead_seconds`` of ``cost/trial_wall_seconds``), if logged."""
    from trainables.timing import overhead_line

    cols = ["cost/overhead_seconds", "cost/trial_wall_seconds"]
    if not set(cols) <= set(trials.columns):
        return None
    return overhead_line(*(pd.to_numeric(trials[c], errors="coerce").tolist() for c in cols))


# ---------------------------------------------------------------------------------------------------
# robustness sanity (gradient-masking checks, trainables/evaluation/sanity.py)
# ---------------------------------------------------------------------------------------------------
SANITY_MARK = "masking?"


def _mark_flagged(df: pd.DataFrame) -> pd.DataFrame:
    """Adds the column ``masking?``: "⚠ <checks>" for trials whose gradient-masking checks flagged, else ""."""
    col = df["sanity"] if "sanity" in df.columns else pd.Series("", index=df.index)
    checks = col.fillna("").astype(str).replace("none", "")
    df[SANITY_MARK] = ["\u26a0 " + c if c else "" for c in checks]
    return df


def sanity_html(a: SweepAnalysis, excluded: bool) -> list[str]:
    """The "Robustness sanity" section: flagged trials, which checks flagged and the numbers behind them."""
    out = ["<h2>Robustness sanity</h2>"]
    if "sanity" not in a.trials.columns or not a.trials["sanity"].notna().any():
        return out + ['<p class="muted">No trial ran the gradient-masking checks (evaluation family '
                      "<code>sanity</code>, robustness group).</p>"]
    flagged = a.trials[a.trials[SANITY_MARK] != ""]
    checked = int(a.trials["sanity"].notna().sum())
    out.append(f"<p>{len(flagged)} of {checked} checked trial(s) flagged. A flag means an attack ordering that holds "
               "for honestly evaluated models failed (PGD no stronger than FGSM, accuracy not falling as ε grows "
               "or at an unbounded ε, more PGD steps weaker, the gradient-free Square or AutoAttack far stronger "
               "than PGD): its robust accuracy may come from masked gradients. Flagged trials carry "
               f"<b>{SANITY_MARK[:-1]} \u26a0</b> in the tables and the front hovers; "
               + ("they are <b>excluded</b> from the fronts." if excluded else
                  "<code>arx report --exclude-flagged</code> leaves them off the fronts.") + "</p>")
    if len(flagged):
        out.append(_table(flagged.assign(**{"on front": flagged["on_front"]}),
                          ["trial_id", "regime", "on front", "sanity", "sanity_why"], link_col="run_link"))
    return out


def render_html(a: SweepAnalysis, meta: dict[str, Any], figs: list[tuple[str, str, Any]],
                gallery: list[tuple[str, Path]], pngs: list[Path], common=None) -> str:
    keys = a.keys
    title = f"arx sweep report: {meta.get('sweep', '?')}"
    out = [f"<h1>{html.escape(title)}</h1>"]
    info = [f"experiment <b>{_e(meta.get('experiment'))}</b>"]
    if meta.get("parent_link"):
        info.append("parent run " + _link(meta["parent_link"], str(meta.get("parent_run_id", ""))))
    if meta.get("tracking_uri"):
        info.append(f"tracking <code>{_e(meta['tracking_uri'])}</code>")
    info.append(f"generated {_e(meta.get('generated'))}")
    out.append(f'<p class="muted">{" · ".join(info)}</p>')
    n_all, n_done = len(a.trials), int((a.trials["status"] == "completed").sum()) if len(a.trials) else 0
    obj_text = ", ".join(f"<code>{html.escape(o.key)}</code> ({'max' if o.direction == 'max' else 'min'})"
                         for o in a.objectives) or "none"
    n_pruned = len(a.pruned) if a.pruned is not None else 0
    out.append(f"<p><b>{n_all}</b> trial(s): <b>{n_done}</b> completed, <b>{n_pruned}</b> pruned (early stopping), "
               f"<b>{len(a.failed)}</b> failed or unfinished; "
               f"<b>{len(a.front)}</b> on the Pareto front. Objectives: {obj_text}."
               + (f" Sweep constraints: {_e(', '.join(meta['constraints']))}." if meta.get("constraints") else "")
               + "</p>")
    if n_all == 0:
        out.append('<div class="note">This sweep has no trial runs yet: there is nothing to analyse.</div>')
    elif n_done == 0:
        out.append('<div class="note">Every trial of this sweep failed or did not finish: there is no Pareto front. '
                   "The failures and their reasons are listed below.</div>")
    for note in a.notes:
        out.append(f'<div class="note">{html.escape(note)}</div>')
    if line := _overhead_line(a.trials):
        out.append(f'<p class="muted overhead">{html.escape(line[0].upper() + line[1:])}.</p>')

    n = 0
    out.append("<h2>Pareto fronts</h2>")
    fronts, n = _fig_html(figs, "fronts", n)
    f3, n = _fig_html(figs, "fronts3d", n)
    out.append(fronts + f3 if fronts or f3 else '<p class="muted">No front to draw.</p>')

    out.append("<h2>Pareto-optimal trials</h2>")
    if len(a.front):
        out.append("<p>Trials no other trial beats in every objective at once (rank 1; equal trials are all kept). "
                   "Trial ids link to their MLflow runs.</p>")
        if link := compare_link(a):
            out.append(f'<p>{_link(link, "Compare the Pareto-optimal runs in MLflow")} (side by side: parameters, '
                       "metrics, curves).</p>")
        out.append(_table(a.front.sort_values(keys[0], ascending=a.objectives[0].direction == "min"),
                          ["trial_id", SANITY_MARK, "regime", *_objective_cols(a), "settings"], link_col="run_link"))
    else:
        out.append('<p class="muted">No Pareto-optimal trial.</p>')

    out += sanity_html(a, bool(meta.get("exclude_flagged")))
    out.append("<h2>Per regime</h2>")
    if len(a.regime_summary):
        out.append("<p>Best and median of each objective over the regime's completed trials with every objective; "
                   "hypervolumes use one reference point (the worst observed value of each objective over all "
                   "regimes"
                   + (": " + ", ".join(f"{k} {_fmt(v)}" for k, v in zip(keys, a.ref_point)) if a.ref_point is not None
                      else "") + "), so they compare.</p>")
        out.append(_table(a.regime_summary, list(a.regime_summary.columns), id_col=""))
    hvf, n = _fig_html(figs, "regimes", n)
    out.append(hvf)
    if common is not False:
        out.append(_common_html(common))

    out.append("<h2>Choosing settings</h2>")
    if a.knee is not None:
        r = _row(a, a.knee.index)
        how = {"hyperplane": "farthest from the line/plane through the extreme front trials after normalising "
                             "each objective over the front (distance {d})",
               "intercepts": "farthest from the plane through the normalised axis intercepts, sum = 1 (one trial "
                             "is extreme in several objectives; distance {d})",
               "ideal": "nearest the ideal point after normalising each objective over the front (the front is "
                        "flat; distance {d})",
               "single": "the only distinct trial on the front",
               "best": "the best trial of the only objective that varies on the front"}[a.knee.method]
        vals = ", ".join(f"{k} = {_fmt(r[k])}" for k in keys)
        out.append(f"<p><b>Knee</b>: trial {_link(str(r.get('run_link') or ''), str(r['trial_id']))} "
                   f"({_e(r['regime'])}) — {vals}; {html.escape(how.format(d=_fmt(a.knee.distance)))}. "
                   f"Settings: {_e(r['settings']) or '(defaults)'}.</p>")
    else:
        out.append('<p class="muted">No knee: there is no front.</p>')
    if a.picks:
        rows = []
        for spec, pk in a.picks:
            if pk.found:
                r = _row(a, pk.index)
                trial = _link(str(r.get("run_link") or ""), str(r["trial_id"]))
                vals = ", ".join(f"{k} = {_fmt(r[k])}" for k in dict.fromkeys([*keys, pk.target]) if k in r.index)
                res = f"trial {trial} ({_e(r['regime'])}): {html.escape(vals)}; settings: {_e(r['settings']) or '(defaults)'}"
            else:
                res = f'<span class="muted">none — {html.escape(pk.note)}</span>'
            cons = html.escape("; ".join(pk.constraints) or "no constraint")
            rows.append(f"<tr><td>{html.escape(spec.label or pk.describe())}</td><td>{cons}</td>"
                        f'<td class="num">{pk.n_feasible}</td><td>{res}</td></tr>')
        out.append("<table><thead><tr><th>pick</th><th>constraints (resolved)</th><th>feasible trials</th>"
                   "<th>choice</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    par, n = _fig_html(figs, "choosing", n)
    out.append(par)
    out.append("<h3>CAM galleries of the chosen settings</h3>")
    if gallery:
        for cap, path in gallery:
            out.append(f'<figure class="cam"><img alt="{html.escape(cap)}" src="{_data_uri(path)}">'
                       f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    else:
        out.append('<p class="muted">No <code>cam_gallery.png</code> artifact in the chosen trials\' MLflow runs.</p>')

    if n_pruned:
        out += _pruned_html(a.pruned)
    out.append("<h2>Failed and incomplete trials</h2>")
    bad = a.failed
    if len(a.missing):
        lacking = a.missing.apply(lambda r: ", ".join(k for k in keys if pd.isna(pd.to_numeric(r.get(k), errors="coerce"))),
                                  axis=1)
        bad = pd.concat([a.failed, a.missing.assign(failure_reason="completed without: " + lacking)])
    out.append(_table(bad, ["trial_id", "regime", "status", "failure_reason", "settings"], link_col="run_link"))

    out.append("<h2>All trials</h2><details><summary>table of every trial (rank 0 = not ranked)</summary>")
    cols = ["trial_id", "regime", "status", "rank", *keys, "settings"]
    order = a.trials.sort_values(["rank"], key=lambda s: s.replace(0, 10 ** 9)) if len(a.trials) else a.trials
    out.append(_table(order, [c for c in cols if c in a.trials.columns or c == "settings"], link_col="run_link"))
    out.append("</details>")

    out.append("<h2>Method</h2><ul>"
               "<li>A trial dominates another when it is at least as good in every objective and strictly better in "
               "one; equal trials do not dominate each other, so ties stay on the front. Ranks are successive "
               "fronts (rank 2 = the front once rank 1 is removed).</li>"
               "<li>Trials that failed, did not finish, or lack a value (NaN) of any objective are left out of "
               "fronts, ranks, hypervolumes, the knee and the picks.</li>"
               "<li>Hypervolume: exact, in the objectives' own units, against the worst observed value of each "
               "objective; a trial at the worst value of an objective adds no volume.</li>"
               "<li>Knee: each objective normalised to [0, 1] over the front (1 = best); the front trial farthest "
               "from the line (2 objectives) or plane (3) through the extreme trials, towards the ideal point.</li>"
               f"<li>Accuracies are fractions: \u201cwithin 1 point\u201d means within {ACCURACY_TOL:g}.</li></ul>")
    if pngs:
        out.append('<p class="muted">Static images beside this file: '
                   + ", ".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>' for p in pngs) + "</p>")

    script = ""
    if figs:
        from plotly.offline import get_plotlyjs

        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"arx-plots\" content=\"{n}\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style>{script}</head><body>\n" + "\n".join(out) + (RESIZE if figs else "")
            + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------------
def write_frame_report(df: pd.DataFrame, out_dir: str | Path, objectives: Any = None,
                       picks: Sequence[PickSpec] | None = None, tracking_uri: str | None = None,
                       meta: dict[str, Any] | None = None, png: bool = True, exclude_flagged: bool = False) -> Path:
    """Write ``out_dir/report.html`` and the PNGs for the trials in ``df`` (``load_runs`` columns)."""
    return _write(df, out_dir, objectives, picks, tracking_uri, {**(meta or {}), "exclude_flagged": exclude_flagged},
                  png)[0]


def _write(df, out_dir, objectives, picks, tracking_uri, meta, png=True) -> tuple[Path, list[Path]]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a = analyse(df, objectives, picks, exclude_flagged=bool((meta or {}).get("exclude_flagged")))
    figs, pngs = _figures(a, out_dir, png)
    m = {"sweep": df.attrs.get("sweep_name") or df.attrs.get("experiment_name") or "?",
         "experiment": df.attrs.get("experiment_name", ""), "tracking_uri": tracking_uri or "",
         "constraints": df.attrs.get("constraints") or [],
         "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}
    m.update(meta or {})
    path = out_dir / REPORT_NAME
    with tempfile.TemporaryDirectory(prefix="arx_cam_") as tmp:
        gallery, gallery_png = _gallery(a, tracking_uri, out_dir, Path(tmp), png)
        if gallery_png:
            pngs.append(gallery_png)
        path.write_text(render_html(a, m, figs, gallery, pngs, _common(a, tracking_uri)), encoding="utf-8")
    return path, [path, *pngs]


def _common(a: SweepAnalysis, tracking_uri: str | None):
    """The common-correct comparison of the completed trials (False: no store to read tables from)."""
    done = a.trials[a.trials["status"] == "completed"] if len(a.trials) else a.trials
    if not tracking_uri or not len(done) or "run_id" not in done:
        return False
    from analysis.per_image import common_correct, load_tables
    from trainables.evaluation import correct_only_keys

    return common_correct(done, load_tables(tracking_uri, [r for r in done["run_id"] if r]), correct_only_keys())


def write_report(sweep: str | None, tracking_uri: str, out_dir: str | Path | None = None, objectives: Any = None,
                 *, picks: Sequence[PickSpec] | None = None, ui_url: str | None = None,
                 log_to_mlflow: bool = True, png: bool = True, exclude_flagged: bool = False) -> Path:
    """The report of a sweep in an MLflow store; returns the HTML path (PNGs are written beside it).

    ``sweep``: a sweep (experiment) name, a launch's Tune name (``default-2``) or parent run id, or None for
    the newest sweep (see ``analysis.runs.resolve_sweep``). ``out_dir`` defaults to ``reports/<sweep name>``.
    ``objectives`` overrides the sweep's own (metric keys or ``{"key", "direction"}`` dicts). The HTML and
    PNGs (``png=False``: none, HTML only) are logged to the parent run under ``report/`` (skipped with a warning if that fails, or when the
    sweep has no parent run). ``exclude_flagged``: leave trials flagged by the gradient-masking checks off the
    fronts (they stay listed under "Robustness sanity"). Raises ``ArxError`` for an unknown sweep.
    """
    ref: SweepRef = resolve_sweep(tracking_uri, sweep)
    df = load_sweep_runs(tracking_uri, ref, ui_url=ui_url)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / ref.name
    base = ui_base(tracking_uri, ui_url)
    meta = {"sweep": ref.name, "experiment": ref.experiment_name, "parent_run_id": ref.parent_run_id or "",
            "parent_link": run_link(base, ref.experiment_id, ref.parent_run_id), "constraints": ref.constraints,
            "exclude_flagged": exclude_flagged}
    path, files = _write(df, out_dir, objectives, picks, tracking_uri, meta, png)
    if log_to_mlflow and ref.parent_run_id:
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
            for f in files:
                client.log_artifact(ref.parent_run_id, str(f), artifact_path="report")
            client.set_tag(ref.parent_run_id, "arx.report", f"report/{REPORT_NAME}")
        except Exception as e:  # the file report stands on its own
            log.warning("could not log the report to MLflow run %s: %s", ref.parent_run_id, e)
    return path
