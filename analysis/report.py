"""One self-contained HTML report per sweep (+ PNGs beside it), also logged to the sweep's parent MLflow run.

``write_report(sweep, tracking_uri, out_dir)`` loads the sweep's trials (``analysis.runs``), computes the
Pareto analysis (``analysis.sweep_analysis.analyse``: fronts, ranks, hypervolumes, knee, constrained picks, all
from ``analysis.pareto``), asks each registered section (``analysis.sections``) for its HTML fragment and figures,
renders the figures (``analysis.figures`` data -> ``analysis.plots``: plotly in the page, matplotlib PNGs beside
it) and lays the sections out with the Jinja2 template ``analysis/templates/report.html.j2``: plotly.js is
embedded inline once (no CDN, works offline), CAM galleries are embedded as data URIs. The report says plainly
what it could not do (one objective, a single trial, every trial failed, no CAM artifacts) instead of failing.
``write_frame_report`` does the same from a DataFrame (e.g. ``load_tune_results``).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from analysis import sections as _sections
from trainables.tracking import REPORT_TAG
from analysis.runs import SweepRef, load_sweep_runs, resolve_sweep, run_link, ui_base
from analysis.sweep_analysis import (  # noqa: F401  (the report's public names)
    SANITY_MARK, PickSpec, SweepAnalysis, analyse, choose_objectives, compare_link, default_picks)

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
TEMPLATE = "report.html.j2"
MAX_GALLERY = 6

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


# ---------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("analysis", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(TEMPLATE)


def render(a: SweepAnalysis, meta: dict[str, Any], gallery: Sequence[tuple[str, Path]] = (), common: Any = False,
           png_dir: Path | None = None, sections: Sequence[_sections.SectionFn] | None = None,
           extra_pngs: Sequence[Path] = ()) -> tuple[str, list[Path]]:
    """The report's HTML and the PNGs written into ``png_dir`` (none without it)."""
    from markupsafe import Markup

    from analysis import plots

    ctx = _sections.Context(a, dict(meta), list(gallery), common)
    built = _sections.build(ctx, list(sections) if sections is not None else None)
    pngs, n, views = [], 0, []
    for s in built:
        divs = []
        for info in s.figures:
            divs.append({"div": Markup(plots.plotly_div(info, f"arx-plot-{n}")), "caption": info.caption})
            n += 1
            if png_dir is not None:
                pngs.append(plots.to_png(info, png_dir))
        views.append({"id": s.id, "title": s.title, "level": s.level, "anchor": s.anchor, "wide": s.wide,
                      "html": Markup(s.html), "after": Markup(s.after), "plots": divs})
    pngs += list(extra_pngs)
    script = ""
    if n:
        from plotly.offline import get_plotlyjs

        script = Markup(get_plotlyjs())
    text = _template().render(title=f"arx sweep report: {meta.get('sweep', '?')}", css=Markup(CSS), plotlyjs=script,
                              n_plots=n, sections=views, pngs=[p.name for p in pngs])
    return text, pngs


def render_html(a: SweepAnalysis, meta: dict[str, Any], gallery: Sequence[tuple[str, Path]] = (),
                common: Any = False) -> str:
    """The report's HTML alone (no PNGs)."""
    return render(a, meta, gallery, common)[0]


# ---------------------------------------------------------------------------------------------------
# CAM galleries of the chosen trials
# ---------------------------------------------------------------------------------------------------
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
# entry points
# ---------------------------------------------------------------------------------------------------
def write_frame_report(df: pd.DataFrame, out_dir: str | Path, objectives: Any = None,
                       picks: Sequence[PickSpec] | None = None, tracking_uri: str | None = None,
                       meta: dict[str, Any] | None = None, png: bool = True, exclude_flagged: bool = False) -> Path:
    """Write ``out_dir/report.html`` and the PNGs for the trials in ``df`` (``load_runs`` columns)."""
    return _write(df, out_dir, objectives, picks, tracking_uri, {**(meta or {}), "exclude_flagged": exclude_flagged},
                  png)[0]


def _silent(_: str) -> None:
    pass


def _write(df, out_dir, objectives, picks, tracking_uri, meta, png=True,
           progress: Callable[[str], None] = _silent) -> tuple[Path, list[Path]]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a = analyse(df, objectives, picks, exclude_flagged=bool((meta or {}).get("exclude_flagged")))
    m = {"sweep": df.attrs.get("sweep_name") or df.attrs.get("experiment_name") or "?",
         "experiment": df.attrs.get("experiment_name", ""), "tracking_uri": tracking_uri or "",
         "constraints": df.attrs.get("constraints") or [],
         "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}
    m.update(meta or {})
    path = out_dir / REPORT_NAME
    with tempfile.TemporaryDirectory(prefix="arx_cam_") as tmp:
        if tracking_uri:
            progress("reading the CAM galleries and per-image tables from MLflow…")
        gallery, gallery_png = _gallery(a, tracking_uri, out_dir, Path(tmp), png)
        common = _common(a, tracking_uri)
        progress("drawing the fronts and figures" + (" (HTML + PNGs)…" if png else "…"))
        text, pngs = render(a, m, gallery, common, out_dir if png else None,
                            extra_pngs=[gallery_png] if gallery_png else [])
        path.write_text(text, encoding="utf-8")
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
                 log_to_mlflow: bool = True, png: bool = True, exclude_flagged: bool = False,
                 progress: Callable[[str], None] = _silent) -> Path:
    """The report of a sweep in an MLflow store; returns the HTML path (PNGs are written beside it).

    ``sweep``: a sweep (experiment) name, a launch's Tune name (``default-2``) or parent run id, or None for
    the newest sweep (see ``analysis.runs.resolve_sweep``). ``out_dir`` defaults to ``reports/<sweep name>``.
    ``objectives`` overrides the sweep's own (metric keys or ``{"key", "direction"}`` dicts). The HTML and
    PNGs (``png=False``: none, HTML only) are logged to the parent run under ``report/`` (skipped with a warning if that fails, or when the
    sweep has no parent run). ``exclude_flagged``: leave trials flagged by the gradient-masking checks off the
    fronts (they stay listed under "Robustness sanity"). ``progress`` gets a line as each slow step starts (the
    CLI prints them). Raises ``ArxError`` for an unknown sweep.
    """
    ref: SweepRef = resolve_sweep(tracking_uri, sweep)
    progress("reading the sweep's trial runs from MLflow…")
    df = load_sweep_runs(tracking_uri, ref, ui_url=ui_url)
    if "status" in df:
        counts = df["status"].value_counts()
        progress(f"{len(df)} trials: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / ref.name
    base = ui_base(tracking_uri, ui_url)
    meta = {"sweep": ref.name, "experiment": ref.experiment_name, "parent_run_id": ref.parent_run_id or "",
            "parent_link": run_link(base, ref.experiment_id, ref.parent_run_id), "constraints": ref.constraints,
            "exclude_flagged": exclude_flagged}
    path, files = _write(df, out_dir, objectives, picks, tracking_uri, meta, png, progress)
    if log_to_mlflow and ref.parent_run_id:
        progress(f"logging the report ({len(files)} files) to the sweep's MLflow parent run…")
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
            for f in files:
                client.log_artifact(ref.parent_run_id, str(f), artifact_path="report")
            client.set_tag(ref.parent_run_id, REPORT_TAG, f"report/{REPORT_NAME}")
        except Exception as e:  # the file report stands on its own
            log.warning("could not log the report to MLflow run %s: %s", ref.parent_run_id, e)
    return path
