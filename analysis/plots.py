"""Figures of a sweep's Pareto analysis: matplotlib (Agg) PNGs and plotly figures for the HTML report.

Plots only draw what they are given: which points are on a front, the knee, the hypervolumes are
computed by ``analysis.pareto`` (via ``analysis.report.analyse``) and passed in; nothing here decides
dominance. Libraries are imported inside the functions (``import analysis.plots`` is cheap), and
matplotlib figures are ``matplotlib.figure.Figure`` objects rendered with Agg (no pyplot state).

Conventions: one colour per regime (``regime_colors``, the same in PNGs and plotly), points off the front
faded, front points opaque with a dark edge, the knee marked with a star; where the points are setting means over
several seeds (``"<key> sd"`` columns, ``analysis/seeds.py``), ± 1 sd error bars on every front plot. Trials pruned by early stopping
(``pruned``) are drawn at their last rung's values (``rung/<key>``) as faded grey crosses: never on a front,
their values come from the rung subset, not the final evaluation.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
FADED_ALPHA = 0.25
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def pruned_xy(pruned: pd.DataFrame | None, *keys: str) -> list[np.ndarray]:
    """The pruned trials' last rung values of ``keys`` (rows with every key finite), one array per key."""
    cols = [f"rung/{k}" for k in keys]
    if pruned is None or not len(pruned) or not all(c in pruned.columns for c in cols):
        return [np.array([]) for _ in keys]
    vals = pruned[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    vals = vals[np.isfinite(vals).all(axis=1)]
    return [vals[:, i] for i in range(len(keys))]


PRUNED_LABEL = "pruned (last rung)"


def sd(points: pd.DataFrame, part: np.ndarray, key: str) -> np.ndarray | None:
    """The ``"<key> sd"`` values of ``part`` (seeds aggregated, ``analysis/seeds.py``; NaN -> 0), or None."""
    col = key + " sd"
    if col not in points.columns:
        return None
    return np.nan_to_num(pd.to_numeric(points.loc[part, col], errors="coerce").to_numpy(float))


def plotly_err(points: pd.DataFrame, part: np.ndarray, key: str) -> dict | None:
    e = sd(points, part, key)
    return None if e is None else dict(type="data", array=e.tolist(), visible=True, thickness=1, width=3)


def png_errorbars(ax, points: pd.DataFrame, part: np.ndarray, keys: Sequence[str], color: str, alpha: float) -> None:
    """± 1 sd bars behind the markers of ``part`` (2-D; nothing without sd columns)."""
    errs = [sd(points, part, k) for k in keys]
    if all(e is None for e in errs) or not part.any():
        return
    ax.errorbar(points.loc[part, keys[0]], points.loc[part, keys[1]], xerr=errs[0], yerr=errs[1], fmt="none",
                ecolor=color, alpha=alpha, elinewidth=0.8, capsize=2, zorder=1)


def regime_colors(regimes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per regime (sorted names -> palette order, cycling)."""
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(sorted(set(map(str, regimes))))}


def fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def staircase(x: np.ndarray, y: np.ndarray, x_dir: str, y_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the attainment boundary through 2-D front points (drawing only; the points are given).

    In the maximise-oriented space, sorted by x, the boundary between consecutive front points p_i, p_i+1
    goes p_i -> (x_i, y_i+1) -> p_i+1.
    """
    sx = 1.0 if x_dir == "max" else -1.0
    sy = 1.0 if y_dir == "max" else -1.0
    order = np.lexsort((-sy * y, sx * x))
    xs, ys = x[order], y[order]
    vx, vy = [], []
    for i in range(len(xs)):
        if i:
            vx.append(xs[i - 1])
            vy.append(ys[i])
        vx.append(xs[i])
        vy.append(ys[i])
    return np.asarray(vx, dtype=float), np.asarray(vy, dtype=float)


def _axis_label(key: str, direction: str) -> str:
    return f"{key} ({'higher' if direction == 'max' else 'lower'} is better)"


def _new_fig(w: float, h: float, projection: str | None = None, margins: dict | None = None):
    """A figure with fixed margins (a layout engine costs more than the drawing on small machines)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    fig.subplots_adjust(**(margins or dict(left=0.15, right=0.97, bottom=0.13, top=0.91)))
    ax = fig.add_subplot(111, projection=projection) if projection else fig.add_subplot(111)
    return fig, ax


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _hover(points: pd.DataFrame, hover_cols: Sequence[str]) -> list[str]:
    out = []
    for _, r in points.iterrows():
        parts = [f"<b>trial {r.get('trial_id', '')}</b> ({r.get('regime', '')})"]
        parts += [f"{c}: {fmt(r[c])}" for c in hover_cols if c in r.index]
        if isinstance(r.get("settings"), str) and r.get("settings"):
            parts.append(r["settings"].replace(", ", "<br>"))
        out.append("<br>".join(parts))
    return out


# ---------------------------------------------------------------------------------------------------
# 2-D fronts
# ---------------------------------------------------------------------------------------------------
def front_2d_png(points: pd.DataFrame, x: str, y: str, x_dir: str, y_dir: str, on_front: np.ndarray,
                 colors: dict[str, str], path: Path, knee: Any = None, title: str | None = None,
                 pruned: pd.DataFrame | None = None) -> Path:
    """Scatter of ``points`` (rows = valid trials) on ``x`` × ``y``; ``on_front`` = the pair's front mask."""
    fig, ax = _new_fig(5.2, 4.2)
    on_front = np.asarray(on_front, dtype=bool)
    px, py = pruned_xy(pruned, x, y)
    if len(px):
        ax.scatter(px, py, marker="x", s=26, color="#888888", alpha=0.5, linewidths=1, label=PRUNED_LABEL)
    for regime in sorted(points["regime"].astype(str).unique()):
        sel = (points["regime"].astype(str) == regime).to_numpy()
        c = colors.get(regime, "#333333")
        png_errorbars(ax, points, sel & ~on_front, (x, y), c, FADED_ALPHA)
        png_errorbars(ax, points, sel & on_front, (x, y), c, 0.8)
        ax.scatter(points.loc[sel & ~on_front, x], points.loc[sel & ~on_front, y], s=28, color=c,
                   alpha=FADED_ALPHA, linewidths=0)
        ax.scatter(points.loc[sel & on_front, x], points.loc[sel & on_front, y], s=46, color=c,
                   edgecolors="#222222", linewidths=0.8, label=regime, zorder=3)
        if not (sel & on_front).any():
            ax.scatter([], [], s=46, color=c, edgecolors="#222222", linewidths=0.8, label=regime)
    if on_front.any():
        sx, sy = staircase(points.loc[on_front, x].to_numpy(float), points.loc[on_front, y].to_numpy(float),
                           x_dir, y_dir)
        ax.plot(sx, sy, color="#222222", linewidth=1.2, alpha=0.8, zorder=2, label="front")
    if knee is not None and knee in points.index:
        ax.scatter([points.loc[knee, x]], [points.loc[knee, y]], marker="*", s=260, facecolors="none",
                   edgecolors="black", linewidths=1.3, zorder=4, label="knee")
    ax.set_xlabel(_axis_label(x, x_dir))
    ax.set_ylabel(_axis_label(y, y_dir))
    ax.set_title(title or f"{y} vs {x}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def front_2d_plotly(points: pd.DataFrame, x: str, y: str, x_dir: str, y_dir: str, on_front: np.ndarray,
                    colors: dict[str, str], knee: Any = None, hover_cols: Sequence[str] = (),
                    title: str | None = None, pruned: pd.DataFrame | None = None):
    import plotly.graph_objects as go

    on_front = np.asarray(on_front, dtype=bool)
    fig = go.Figure()
    px, py = pruned_xy(pruned, x, y)
    if len(px):
        fig.add_trace(go.Scatter(x=px.tolist(), y=py.tolist(), mode="markers", name=PRUNED_LABEL,
                                 marker=dict(symbol="x", color="#888888", size=7, opacity=0.5),
                                 hovertemplate="pruned: last rung %{x:.3f}, %{y:.3f}<extra></extra>"))
    text = np.asarray(_hover(points, hover_cols), dtype=object)
    for regime in sorted(points["regime"].astype(str).unique()):
        sel = (points["regime"].astype(str) == regime).to_numpy()
        c = colors.get(regime, "#333333")
        first = True
        for part, opacity, size, line in ((sel & on_front, 1.0, 11, 1), (sel & ~on_front, FADED_ALPHA, 8, 0)):
            if not part.any():
                continue
            fig.add_trace(go.Scatter(
                x=points.loc[part, x].tolist(), y=points.loc[part, y].tolist(), mode="markers",
                error_x=plotly_err(points, part, x), error_y=plotly_err(points, part, y),
                name=regime, legendgroup=regime, showlegend=first,
                marker=dict(color=c, size=size, opacity=opacity, line=dict(width=line, color="#222222")),
                text=text[part].tolist(), hovertemplate="%{text}<extra></extra>"))
            first = False
    if on_front.any():
        sx, sy = staircase(points.loc[on_front, x].to_numpy(float), points.loc[on_front, y].to_numpy(float),
                           x_dir, y_dir)
        fig.add_trace(go.Scatter(x=sx.tolist(), y=sy.tolist(), mode="lines", name="front",
                                 line=dict(color="#222222", width=1.5), hoverinfo="skip"))
    if knee is not None and knee in points.index:
        fig.add_trace(go.Scatter(x=[points.loc[knee, x]], y=[points.loc[knee, y]], mode="markers", name="knee",
                                 marker=dict(symbol="star-open", size=20, color="black", line=dict(width=2)),
                                 hoverinfo="skip"))
    fig.update_layout(title=title or f"{y} vs {x}", height=440, margin=dict(l=60, r=20, t=50, b=50),
                      xaxis_title=_axis_label(x, x_dir), yaxis_title=_axis_label(y, y_dir),
                      template="plotly_white", legend=dict(font=dict(size=10)))
    return fig


# ---------------------------------------------------------------------------------------------------
# 3-D view
# ---------------------------------------------------------------------------------------------------
def front_3d_plotly(points: pd.DataFrame, keys: Sequence[str], dirs: Sequence[str], on_front: np.ndarray,
                    colors: dict[str, str], knee: Any = None, hover_cols: Sequence[str] = ()):
    import plotly.graph_objects as go

    x, y, z = keys[:3]
    on_front = np.asarray(on_front, dtype=bool)
    text = np.asarray(_hover(points, hover_cols), dtype=object)
    fig = go.Figure()
    for regime in sorted(points["regime"].astype(str).unique()):
        sel = (points["regime"].astype(str) == regime).to_numpy()
        c = colors.get(regime, "#333333")
        for part, opacity, size, suffix in ((sel & ~on_front, 0.3, 4, " (dominated)"), (sel & on_front, 1.0, 7, "")):
            if not part.any():
                continue
            fig.add_trace(go.Scatter3d(
                x=points.loc[part, x].tolist(), y=points.loc[part, y].tolist(), z=points.loc[part, z].tolist(),
                error_x=plotly_err(points, part, x), error_y=plotly_err(points, part, y),
                error_z=plotly_err(points, part, z), mode="markers", name=regime + suffix, legendgroup=regime, opacity=opacity,
                marker=dict(color=c, size=size, line=dict(width=1 if opacity == 1 else 0, color="#222222")),
                text=text[part].tolist(), hovertemplate="%{text}<extra></extra>"))
    if knee is not None and knee in points.index:
        fig.add_trace(go.Scatter3d(x=[points.loc[knee, x]], y=[points.loc[knee, y]], z=[points.loc[knee, z]],
                                   mode="markers", name="knee", hoverinfo="skip",
                                   marker=dict(symbol="diamond-open", size=12, color="black")))
    fig.update_layout(title="Pareto front in 3-D (" + ", ".join(f"{k} {d}" for k, d in zip(keys[:3], dirs[:3])) + ")",
                      height=560, margin=dict(l=0, r=0, t=50, b=0), template="plotly_white",
                      scene=dict(xaxis_title=x, yaxis_title=y, zaxis_title=z))
    return fig


def front_3d_png(points: pd.DataFrame, keys: Sequence[str], dirs: Sequence[str], on_front: np.ndarray,
                 colors: dict[str, str], path: Path, knee: Any = None) -> Path:
    fig, ax = _new_fig(6.0, 5.0, projection="3d", margins=dict(left=0.0, right=0.95, bottom=0.02, top=0.93))
    x, y, z = keys[:3]
    on_front = np.asarray(on_front, dtype=bool)
    for regime in sorted(points["regime"].astype(str).unique()):
        sel = (points["regime"].astype(str) == regime).to_numpy()
        c = colors.get(regime, "#333333")
        for part, alpha in ((sel & ~on_front, FADED_ALPHA), (sel & on_front, 0.8)):
            errs = [sd(points, part, k) for k in (x, y, z)]
            if part.any() and errs[0] is not None:
                ax.errorbar(points.loc[part, x], points.loc[part, y], points.loc[part, z], xerr=errs[0], yerr=errs[1],
                            zerr=errs[2], fmt="none", ecolor=c, alpha=alpha, elinewidth=0.8)
        ax.scatter(points.loc[sel & ~on_front, x], points.loc[sel & ~on_front, y], points.loc[sel & ~on_front, z],
                   color=c, alpha=FADED_ALPHA, s=18)
        ax.scatter(points.loc[sel & on_front, x], points.loc[sel & on_front, y], points.loc[sel & on_front, z],
                   color=c, edgecolors="#222222", s=36, label=regime)
    if knee is not None and knee in points.index:
        ax.scatter([points.loc[knee, x]], [points.loc[knee, y]], [points.loc[knee, z]], marker="*", s=220,
                   facecolors="none", edgecolors="black", label="knee")
    for setter, key in ((ax.set_xlim, x), (ax.set_ylim, y), (ax.set_zlim, z)):
        v = points[key].to_numpy(float)
        lo, hi = float(np.min(v)), float(np.max(v))
        pad = 0.08 * (hi - lo) if hi > lo else 0.05 * (abs(hi) or 1.0)
        setter(lo - pad, hi + pad)
    ax.set_xlabel(x, fontsize=8)
    ax.set_ylabel(y, fontsize=8)
    ax.set_zlabel(z, fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title("front in 3-D (" + ", ".join(f"{d}" for d in dirs[:3]) + ")", fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# parallel coordinates of the Pareto settings
# ---------------------------------------------------------------------------------------------------
def _parallel_axes(front: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> list[dict]:
    """Per axis: label, values (floats), tickvals, ticktext. Categorical -> codes; NaN -> an "n/a" tick."""
    axes = []
    for col, label in columns:
        s = front[col]
        if s.isna().all():
            continue
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().sum() == s.notna().sum() and num.notna().any():
            v = num.to_numpy(float)
            lo, hi = np.nanmin(v), np.nanmax(v)
            ax = {"label": label, "values": v, "range": [lo, hi] if hi > lo else [lo - 0.5, hi + 0.5]}
            if np.isnan(v).any():
                na = lo - 0.15 * ((hi - lo) or 1.0)
                v = np.where(np.isnan(v), na, v)
                ax.update(values=v, range=[na, ax["range"][1]], tickvals=[na, lo, hi],
                          ticktext=["n/a", fmt(lo), fmt(hi)])
            axes.append(ax)
        else:
            text = s.astype(object).where(s.notna(), "n/a").astype(str)
            cats = sorted(text.unique())
            code = {c: i for i, c in enumerate(cats)}
            v = text.map(code).to_numpy(float)
            axes.append({"label": label, "values": v, "range": [-0.5, len(cats) - 0.5],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    return axes


def parallel_plotly(front: pd.DataFrame, columns: Sequence[tuple[str, str]], colors: dict[str, str]):
    import plotly.graph_objects as go

    axes = _parallel_axes(front, columns)
    regimes = sorted(colors)
    code = front["regime"].astype(str).map({r: i for i, r in enumerate(regimes)}).fillna(0).to_numpy(float)
    n = max(len(regimes), 1)
    scale = []
    for i, r in enumerate(regimes):
        scale += [[i / n, colors[r]], [(i + 1) / n, colors[r]]]
    dims = []
    for a in axes:
        d = dict(label=a["label"], values=a["values"].tolist(), range=a["range"])
        if "tickvals" in a:
            d.update(tickvals=a["tickvals"], ticktext=a["ticktext"])
        dims.append(d)
    fig = go.Figure(go.Parcoords(line=dict(color=code.tolist(), colorscale=scale or [[0, PALETTE[0]], [1, PALETTE[0]]],
                                           cmin=-0.5 if n == 1 else 0, cmax=n - 1 if n > 1 else 0.5),
                                 dimensions=dims))
    fig.update_layout(title="Pareto-optimal settings (one line per trial, coloured by regime: "
                            + ", ".join(regimes) + ")", height=460, margin=dict(l=70, r=70, t=90, b=40),
                      template="plotly_white")
    return fig


def parallel_png(front: pd.DataFrame, columns: Sequence[tuple[str, str]], colors: dict[str, str], path: Path) -> Path:
    axes = _parallel_axes(front, columns)
    fig, ax = _new_fig(max(5.0, 1.4 * len(axes)), 4.2, margins=dict(left=0.04, right=0.93, bottom=0.25, top=0.9))
    xs = np.arange(len(axes))
    norm = []
    for a in axes:
        lo, hi = a["range"]
        norm.append((a["values"] - lo) / ((hi - lo) or 1.0))
    norm = np.array(norm)                     # (axes, rows)
    regimes = front["regime"].astype(str).to_numpy()
    seen = set()
    for j in range(norm.shape[1]):
        r = regimes[j]
        ax.plot(xs, norm[:, j], color=colors.get(r, "#333333"), alpha=0.8, linewidth=1.4,
                label=r if r not in seen else None, marker="o", markersize=3)
        seen.add(r)
    for i, a in enumerate(axes):
        ax.axvline(i, color="#999999", linewidth=0.8)
        lo, hi = a["range"]
        if "ticktext" in a:
            for tv, tt in zip(a["tickvals"], a["ticktext"]):
                ax.text(i + 0.03, (tv - lo) / ((hi - lo) or 1.0), tt, fontsize=6, va="center")
        else:
            ax.text(i + 0.03, 1.0, fmt(hi), fontsize=6, va="bottom")
            ax.text(i + 0.03, 0.0, fmt(lo), fontsize=6, va="top")
    ax.set_xticks(xs)
    ax.set_xticklabels([a["label"] for a in axes], rotation=25, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.1, 1.1)
    ax.set_title("Pareto-optimal settings", fontsize=10)
    if seen:
        ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# hypervolume per regime; single-objective ranking
# ---------------------------------------------------------------------------------------------------
def hypervolume_plotly(hv: dict[str, float], colors: dict[str, str], overall: float | None = None):
    import plotly.graph_objects as go

    names = list(hv)
    fig = go.Figure(go.Bar(x=names, y=[hv[n] for n in names], marker_color=[colors.get(n, "#333333") for n in names],
                           text=[fmt(hv[n]) for n in names], textposition="outside", name="hypervolume"))
    if overall is not None:
        fig.add_hline(y=overall, line_dash="dash", line_color="#444444",
                      annotation_text=f"all regimes: {fmt(overall)}")
    fig.update_layout(title="Hypervolume per regime (common reference point)", height=380,
                      yaxis_title="hypervolume", template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))
    return fig


def hypervolume_png(hv: dict[str, float], colors: dict[str, str], path: Path, overall: float | None = None) -> Path:
    fig, ax = _new_fig(max(4.0, 0.9 * len(hv) + 2), 3.4, margins=dict(left=0.16, right=0.97, bottom=0.2, top=0.88))
    names = list(hv)
    ax.bar(names, [hv[n] for n in names], color=[colors.get(n, "#333333") for n in names])
    for i, n in enumerate(names):
        ax.text(i, hv[n], fmt(hv[n]), ha="center", va="bottom", fontsize=7)
    if overall is not None:
        ax.axhline(overall, linestyle="--", color="#444444", linewidth=1, label=f"all regimes {fmt(overall)}")
        ax.legend(fontsize=7)
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume per regime (common reference point)", fontsize=10)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return _save(fig, path)


def objective_plotly(points: pd.DataFrame, key: str, direction: str, on_front: np.ndarray, colors: dict[str, str],
                     hover_cols: Sequence[str] = ()):
    """One objective: the trials per regime, the best (the 'front') opaque."""
    import plotly.graph_objects as go

    on_front = np.asarray(on_front, dtype=bool)
    text = np.asarray(_hover(points, hover_cols), dtype=object)
    fig = go.Figure()
    for regime in sorted(points["regime"].astype(str).unique()):
        sel = (points["regime"].astype(str) == regime).to_numpy()
        for part, opacity, size in ((sel & ~on_front, 0.45, 9), (sel & on_front, 1.0, 13)):
            if part.any():
                fig.add_trace(go.Scatter(x=[regime] * int(part.sum()), y=points.loc[part, key].tolist(), mode="markers",
                                         error_y=plotly_err(points, part, key),
                                         name=regime + ("" if opacity == 1 else " (others)"), opacity=opacity,
                                         marker=dict(color=colors.get(regime), size=size,
                                                     line=dict(width=1 if opacity == 1 else 0, color="#222222")),
                                         text=text[part].tolist(), hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=f"{key} per trial (single objective; best opaque)", height=400, template="plotly_white",
                      yaxis_title=_axis_label(key, direction), margin=dict(l=60, r=20, t=50, b=50))
    return fig


def objective_png(points: pd.DataFrame, key: str, direction: str, on_front: np.ndarray, colors: dict[str, str],
                  path: Path) -> Path:
    on_front = np.asarray(on_front, dtype=bool)
    regimes = sorted(points["regime"].astype(str).unique())
    fig, ax = _new_fig(max(4.0, 1.0 * len(regimes) + 2), 3.6)
    for i, regime in enumerate(regimes):
        sel = (points["regime"].astype(str) == regime).to_numpy()
        jitter = np.linspace(-0.15, 0.15, int(sel.sum())) if sel.sum() > 1 else np.zeros(int(sel.sum()))
        vals = points.loc[sel, key].to_numpy(float)
        front = on_front[sel]
        e = sd(points, sel, key)
        if e is not None:
            ax.errorbar(i + jitter, vals, yerr=e, fmt="none", ecolor=colors.get(regime), alpha=0.6, capsize=2)
        ax.scatter(i + jitter[~front], vals[~front], color=colors.get(regime), alpha=0.45, s=24)
        ax.scatter(i + jitter[front], vals[front], color=colors.get(regime), edgecolors="#222222", s=46)
    ax.set_xticks(range(len(regimes)))
    ax.set_xticklabels(regimes, fontsize=8)
    ax.set_ylabel(_axis_label(key, direction))
    ax.set_title(f"{key} per trial", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# CAM gallery
# ---------------------------------------------------------------------------------------------------
def cam_gallery_png(items: Sequence[tuple[str, Path]], path: Path) -> Path | None:
    """Stack the given ``cam_gallery.png`` images (one per chosen trial, with a caption); None if none."""
    items = [(t, Path(p)) for t, p in items if Path(p).is_file()]
    if not items:
        return None
    import textwrap

    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    imgs = [(t, mpimg.imread(str(p))) for t, p in items]
    width = 9.0
    heights = [width * im.shape[0] / max(im.shape[1], 1) for _, im in imgs]
    lines = sum(len(textwrap.wrap(t, 110)) for t, _ in imgs)
    fig = Figure(figsize=(width, sum(heights) + 0.25 * lines + 0.3 * len(imgs)), dpi=100)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.97, hspace=0.3)
    axes = fig.subplots(len(imgs), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, im) in zip(axes, imgs):
        ax.imshow(im)
        ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=9)
        ax.axis("off")
    return _save(fig, path)
