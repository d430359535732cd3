"""The sections of a sweep report: one registered function each (issue #19.3).

A section takes the report's ``Context`` (the ``SweepAnalysis`` plus the report's metadata, CAM gallery and
common-correct table) and returns a ``Section``: its title, its HTML fragment and the figures it shows
(``analysis.figures.FigureInfo``; the report renders them with plotly in the page and matplotlib beside it),
or None when it has nothing to say. ``SECTIONS`` lists them in page order; ``analysis/templates/report.html.j2``
lays them out. Adding a section is one function::

    @section(after="per_regime")
    def trial_count(ctx: Context) -> Section:
        return Section("Trial count", f"<p>{len(ctx.a.trials)} trials</p>")
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis import figures, pareto, seeds
from analysis.figures import FigureInfo
from analysis.html_parts import data_uri, e, fmt, link, muted, note, table
from analysis.runs import PARAM_PREFIX
from analysis.sweep_analysis import ACCURACY_TOL, SANITY_MARK, SweepAnalysis, compare_link


@dataclass
class Section:
    title: str
    html: str = ""
    figures: list[FigureInfo] = field(default_factory=list)
    wide: bool = True                # one figure per row (False: a grid of figures side by side)
    level: int = 2                   # heading level
    anchor: str = ""                 # id of the heading
    after: str = ""                  # HTML below the figures
    id: str = ""                     # set from the function name


@dataclass
class Context:
    a: SweepAnalysis
    meta: dict[str, Any] = field(default_factory=dict)
    gallery: list[tuple[str, Path]] = field(default_factory=list)
    common: Any = False              # analysis.per_image.common_correct result; None: no comparison; False: no store

    @cached_property
    def colors(self) -> dict[str, str]:
        return figures.regime_colors(self.a.trials["regime"].unique()) if len(self.a.trials) else {}

    @cached_property
    def hover(self) -> list[str]:
        flagged = len(self.a.valid) and (self.a.valid[SANITY_MARK] != "").any()
        return [*self.a.keys, SANITY_MARK] if flagged else list(self.a.keys)

    @cached_property
    def dirs(self) -> dict[str, str]:
        return {o.key: o.direction for o in self.a.objectives}

    @property
    def knee(self) -> Any:
        return self.a.knee.index if self.a.knee else None


SectionFn = Callable[[Context], "Section | None"]
SECTIONS: list[SectionFn] = []


def section(fn: SectionFn | None = None, *, after: str | None = None):
    """Register a section (at the end, or right after the section function named ``after``)."""
    def register(f: SectionFn) -> SectionFn:
        names = [s.__name__ for s in SECTIONS]
        SECTIONS.insert(names.index(after) + 1 if after in names else len(SECTIONS), f)
        return f
    return register(fn) if fn is not None else register


def build(ctx: Context, sections: list[SectionFn] | None = None) -> list[Section]:
    out = []
    for fn in SECTIONS if sections is None else sections:
        s = fn(ctx)
        if s is not None:
            s.id = s.id or fn.__name__.replace("_", "-")
            out.append(s)
    return out


def _row(a: SweepAnalysis, idx: Any) -> pd.Series:
    """A ranked row: the setting (means over seeds) when the analysis is by setting, else the trial."""
    return a.valid.loc[idx] if idx in a.valid.index else a.trials.loc[idx]


def _objective_cols(a: SweepAnalysis) -> list[str]:
    """The objective columns of a front table: with seeds aggregated, each mean followed by its sd, then n."""
    if not a.by_setting:
        return list(a.keys)
    return [c for k in a.keys for c in (k, seeds.sd_col(k))] + ["n"]


# ---------------------------------------------------------------------------------------------------
# the sections, in page order
# ---------------------------------------------------------------------------------------------------
@section
def overview(ctx: Context) -> Section:
    a, meta = ctx.a, ctx.meta
    info = [f"experiment <b>{e(meta.get('experiment'))}</b>"]
    if meta.get("parent_link"):
        info.append("parent run " + link(meta["parent_link"], str(meta.get("parent_run_id", ""))))
    if meta.get("tracking_uri"):
        info.append(f"tracking <code>{e(meta['tracking_uri'])}</code>")
    info.append(f"generated {e(meta.get('generated'))}")
    n_all = len(a.trials)
    n_done = int((a.trials["status"] == "completed").sum()) if n_all else 0
    n_pruned = len(a.pruned) if a.pruned is not None else 0
    objs = ", ".join(f"<code>{html.escape(o.key)}</code> ({'max' if o.direction == 'max' else 'min'})" for o in a.objectives) or "none"
    cons = f" Sweep constraints: {e(', '.join(meta['constraints']))}." if meta.get("constraints") else ""
    out = [muted(" · ".join(info)),
           f"<p><b>{n_all}</b> trial(s): <b>{n_done}</b> completed, <b>{n_pruned}</b> pruned (early stopping), "
           f"<b>{len(a.failed)}</b> failed or unfinished; <b>{len(a.front)}</b> on the Pareto front. "
           f"Objectives: {objs}.{cons}</p>"]
    if n_all == 0:
        out.append(note("This sweep has no trial runs yet: there is nothing to analyse."))
    elif n_done == 0:
        out.append(note("Every trial of this sweep failed or did not finish: there is no Pareto front. "
                        "The failures and their reasons are listed below."))
    out += [note(n) for n in a.notes]
    if line := _overhead_line(a.trials):
        out.append(f'<p class="muted overhead">{html.escape(line[0].upper() + line[1:])}.</p>')
    return Section("", "\n".join(out))


def _overhead_line(trials: pd.DataFrame) -> str | None:
    """The sweep's trial overhead (``cost/overhead_seconds`` of ``cost/trial_wall_seconds``), if logged."""
    from trainables.timing import overhead_line

    cols = ["cost/overhead_seconds", "cost/trial_wall_seconds"]
    if not set(cols) <= set(trials.columns):
        return None
    return overhead_line(*(pd.to_numeric(trials[c], errors="coerce").tolist() for c in cols))


@section
def pareto_fronts(ctx: Context) -> Section:
    """Every pair of objectives (or the single objective per regime); pruned trials as faded crosses."""
    a = ctx.a
    figs = []
    if len(a.valid) and len(a.objectives) == 1:
        k = a.keys[0]
        figs.append(figures.objective_strip(a.valid, k, ctx.dirs[k], a.valid["on_front"].to_numpy(bool),
                                            ctx.colors, ctx.hover))
    for (x, y), mask in (a.pair_fronts.items() if len(a.valid) else ()):
        figs.append(figures.front_2d(a.valid, x, y, ctx.dirs, mask, ctx.colors, ctx.knee, ctx.hover, a.pruned))
    return Section("Pareto fronts", "" if figs else muted("No front to draw."), figs, wide=False)


@section
def front_3d(ctx: Context) -> Section | None:
    a = ctx.a
    if not len(a.valid) or len(a.objectives) < 3:
        return None
    on = a.valid["on_front"].to_numpy(bool) if len(a.objectives) == 3 else \
        pareto.non_dominated(a.valid, a.objectives[:3])
    return Section("", figures=[figures.front_3d(a.valid, a.keys, ctx.dirs, on, ctx.colors, ctx.knee, ctx.hover)])


@section
def pareto_optimal(ctx: Context) -> Section:
    a = ctx.a
    if not len(a.front):
        return Section("Pareto-optimal trials", muted("No Pareto-optimal trial."))
    out = ["<p>Trials no other trial beats in every objective at once (rank 1; equal trials are all kept). "
           "Trial ids link to their MLflow runs.</p>"]
    if url := compare_link(a):
        out.append(f'<p>{link(url, "Compare the Pareto-optimal runs in MLflow")} (side by side: parameters, '
                   "metrics, curves).</p>")
    rows = a.front.sort_values(a.keys[0], ascending=a.objectives[0].direction == "min")
    out.append(table(rows, ["trial_id", SANITY_MARK, "regime", *_objective_cols(a), "settings"], link_col="run_link"))
    return Section("Pareto-optimal trials", "".join(out))


@section
def robustness_sanity(ctx: Context) -> Section:
    """Flagged trials, which gradient-masking checks flagged them and the numbers behind them."""
    a, title = ctx.a, "Robustness sanity"
    if "sanity" not in a.trials.columns or not a.trials["sanity"].notna().any():
        return Section(title, muted("No trial ran the gradient-masking checks (evaluation family "
                                    "<code>sanity</code>, robustness group)."))
    flagged = a.trials[a.trials[SANITY_MARK] != ""]
    checked = int(a.trials["sanity"].notna().sum())
    excluded = bool(ctx.meta.get("exclude_flagged"))
    out = [f"<p>{len(flagged)} of {checked} checked trial(s) flagged. A flag means an attack ordering that holds "
           "for honestly evaluated models failed (PGD no stronger than FGSM, accuracy not falling as ε grows "
           "or at an unbounded ε, more PGD steps weaker, the gradient-free Square or AutoAttack far stronger "
           "than PGD): its robust accuracy may come from masked gradients. Flagged trials carry "
           f"<b>{SANITY_MARK[:-1]} \u26a0</b> in the tables and the front hovers; "
           + ("they are <b>excluded</b> from the fronts." if excluded else
              "<code>arx report --exclude-flagged</code> leaves them off the fronts.") + "</p>"]
    if len(flagged):
        out.append(table(flagged.assign(**{"on front": flagged["on_front"]}),
                         ["trial_id", "regime", "on front", "sanity", "sanity_why"], link_col="run_link"))
    return Section(title, "".join(out))


@section
def per_regime(ctx: Context) -> Section:
    a = ctx.a
    out = []
    if len(a.regime_summary):
        ref = (": " + ", ".join(f"{k} {fmt(v)}" for k, v in zip(a.keys, a.ref_point))) if a.ref_point is not None else ""
        out.append("<p>Best and median of each objective over the regime's completed trials with every objective; "
                   "hypervolumes use one reference point (the worst observed value of each objective over all "
                   f"regimes{ref}), so they compare.</p>")
        out.append(table(a.regime_summary, list(a.regime_summary.columns), id_col=""))
    figs = []
    if a.hv_by_regime and len(a.valid):
        hv = {r: a.hv_by_regime[r] for r in sorted(a.hv_by_regime)}
        figs.append(figures.hypervolume_bars(hv, ctx.colors, a.hypervolume if len(hv) > 1 else None))
    return Section("Per regime", "".join(out), figs)


@section
def common_correct(ctx: Context) -> Section | None:
    """Attribution metrics re-scored on the images every compared trial classifies correctly."""
    cc, title = ctx.common, "Attribution metrics on commonly correct images"
    if cc is False:
        return None
    if cc is None:
        return Section(title, muted("No comparison: fewer than two completed trials with a "
                                    "<code>per_image.parquet</code> artifact over the same images."),
                       anchor="common-correct")
    out = [f"<p>Attribution metrics admit only correctly classified images, so each trial's logged value uses "
           f"its own correct images. Here each trial is re-scored on the <b>{cc.images}</b> test images that "
           f"all <b>{cc.trials}</b> compared trials classify correctly (same dataset, split and seed; the "
           "at-feature-map-smoothing protocol), then averaged per regime next to the regime's mean logged "
           "value; <i>images</i> is the fewest of them a trial's metric admitted.</p>"]
    if cc.note:
        out.append(note(cc.note))
    out.append(table(cc.table, ["regime", "key", "trials", "logged", "common", "images"], id_col=""))
    return Section(title, "".join(out), anchor="common-correct")


KNEE_HOW = {
    "hyperplane": "farthest from the line/plane through the extreme front trials after normalising each objective "
                  "over the front (distance {d})",
    "intercepts": "farthest from the plane through the normalised axis intercepts, sum = 1 (one trial is extreme "
                  "in several objectives; distance {d})",
    "ideal": "nearest the ideal point after normalising each objective over the front (the front is flat; "
             "distance {d})",
    "single": "the only distinct trial on the front",
    "best": "the best trial of the only objective that varies on the front"}


def _knee_html(a: SweepAnalysis) -> str:
    if a.knee is None:
        return muted("No knee: there is no front.")
    r = _row(a, a.knee.index)
    vals = ", ".join(f"{k} = {fmt(r[k])}" for k in a.keys)
    how = KNEE_HOW[a.knee.method].format(d=fmt(a.knee.distance))
    return (f"<p><b>Knee</b>: trial {link(str(r.get('run_link') or ''), str(r['trial_id']))} "
            f"({e(r['regime'])}) — {vals}; {html.escape(how)}. Settings: {e(r['settings']) or '(defaults)'}.</p>")


def _picks_html(a: SweepAnalysis) -> str:
    rows = []
    for spec, pk in a.picks:
        if pk.found:
            r = _row(a, pk.index)
            vals = ", ".join(f"{k} = {fmt(r[k])}" for k in dict.fromkeys([*a.keys, pk.target]) if k in r.index)
            res = (f"trial {link(str(r.get('run_link') or ''), str(r['trial_id']))} ({e(r['regime'])}): "
                   f"{html.escape(vals)}; settings: {e(r['settings']) or '(defaults)'}")
        else:
            res = f'<span class="muted">none — {html.escape(pk.note)}</span>'
        cons = html.escape("; ".join(pk.constraints) or "no constraint")
        rows.append(f"<tr><td>{html.escape(spec.label or pk.describe())}</td><td>{cons}</td>"
                    f'<td class="num">{pk.n_feasible}</td><td>{res}</td></tr>')
    return ("<table><thead><tr><th>pick</th><th>constraints (resolved)</th><th>feasible trials</th>"
            "<th>choice</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else ""


@section
def choosing_settings(ctx: Context) -> Section:
    """The knee, the constrained picks and the Pareto-optimal settings in parallel coordinates."""
    a = ctx.a
    figs = []
    if len(a.front):
        cols = [("regime", "regime")] + [(c, c[len(PARAM_PREFIX):]) for c in a.setting_cols][:10] \
            + [(k, k) for k in a.keys]
        figs.append(figures.parallel(a.front, cols, ctx.colors))
    return Section("Choosing settings", _knee_html(a) + _picks_html(a), figs)


@section
def cam_galleries(ctx: Context) -> Section:
    if not ctx.gallery:
        return Section("CAM galleries of the chosen settings",
                       muted("No <code>cam_gallery.png</code> artifact in the chosen trials' MLflow runs."), level=3)
    items = [f'<figure class="cam"><img alt="{html.escape(cap)}" src="{data_uri(path)}">'
             f"<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, path in ctx.gallery]
    return Section("CAM galleries of the chosen settings", "".join(items), level=3)


@section
def pruned_trials(ctx: Context) -> Section | None:
    """Trials stopped at a rung by the multi-objective successive halving (faded; never on a front)."""
    pruned = ctx.a.pruned
    if pruned is None or not len(pruned):
        return None
    saved = pd.to_numeric(pruned["device_seconds_saved"], errors="coerce").sum() \
        if "device_seconds_saved" in pruned else float("nan")
    cols = [c for c in ["trial_id", "regime", "rung", "device_seconds_saved", "settings"] if c in pruned.columns]
    return Section("Pruned trials", f'<div class="pruned" style="opacity:0.6"><p class="muted">{len(pruned)} '
                   "trial(s) stopped at an early-stopping rung (not on any front; their objectives exist only on the "
                   f"rung subset); ~{saved:.0f} device-seconds saved.</p>"
                   + table(pruned, cols, link_col="run_link") + "</div>")


@section
def failed_trials(ctx: Context) -> Section:
    a = ctx.a
    bad = a.failed
    if len(a.missing):
        lacking = a.missing.apply(lambda r: ", ".join(k for k in a.keys
                                                      if pd.isna(pd.to_numeric(r.get(k), errors="coerce"))), axis=1)
        bad = pd.concat([a.failed, a.missing.assign(failure_reason="completed without: " + lacking)])
    return Section("Failed and incomplete trials",
                   table(bad, ["trial_id", "regime", "status", "failure_reason", "settings"], link_col="run_link"))


@section
def all_trials(ctx: Context) -> Section:
    t = ctx.a.trials
    cols = [c for c in ["trial_id", "regime", "status", "rank", *ctx.a.keys, "settings"] if c in t.columns]
    order = t.sort_values(["rank"], key=lambda s: s.replace(0, 10 ** 9)) if len(t) else t
    return Section("All trials", "<details><summary>table of every trial (rank 0 = not ranked)</summary>"
                   + table(order, cols, link_col="run_link") + "</details>")


@section
def method(ctx: Context) -> Section:
    return Section("Method", "<ul>"
                   "<li>A trial dominates another when it is at least as good in every objective and strictly "
                   "better in one; equal trials do not dominate each other, so ties stay on the front. Ranks are "
                   "successive fronts (rank 2 = the front once rank 1 is removed).</li>"
                   "<li>Trials that failed, did not finish, or lack a value (NaN) of any objective are left out of "
                   "fronts, ranks, hypervolumes, the knee and the picks.</li>"
                   "<li>Where a setting ran with several seeds, the setting's mean over its seeds stands for it "
                   "(error bars and the sd columns: ± 1 sample standard deviation; n = seeds).</li>"
                   "<li>Hypervolume: exact, in the objectives' own units, against the worst observed value of each "
                   "objective; a trial at the worst value of an objective adds no volume.</li>"
                   "<li>Knee: each objective normalised to [0, 1] over the front (1 = best); the front trial "
                   "farthest from the line (2 objectives) or plane (3) through the extreme trials, towards the "
                   "ideal point.</li>"
                   f"<li>Accuracies are fractions: \u201cwithin 1 point\u201d means within {ACCURACY_TOL:g}.</li>"
                   "</ul>")
