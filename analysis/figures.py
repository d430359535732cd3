"""One data structure per figure of a sweep report (issue #19.3; Optuna's ``_get_pareto_front_info`` split).

A builder here takes numbers the analysis already computed (``analysis.pareto`` via ``analysis.report.analyse``:
front masks, knee, hypervolumes) and decides, once, what each figure shows and how: which rows form which
layer (per regime, front opaque with a dark edge, the rest faded, pruned trials as grey crosses at their last
rung, the knee as a star, ± 1 sd error bars where the points are setting means), colours, sizes, titles, axis
labels and the PNG's file name. ``analysis.plots`` only translates a ``FigureInfo`` into a plotly figure (HTML)
or a matplotlib PNG; nothing there selects rows or decides styles, and nothing here imports a plotting library.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
EDGE = "#222222"
PRUNED_COLOR = "#888888"
FADED_ALPHA = 0.25
PRUNED_LABEL = "pruned (last rung)"


@dataclass
class Layer:
    """One set of marks drawn alike (a trace in plotly, one ``scatter``/``plot``/``bar`` call in matplotlib)."""
    x: list
    y: list
    z: list | None = None
    name: str = ""                   # legend entry ("" = none)
    mode: str = "markers"            # markers | lines | bars
    color: str | list = "#333333"    # one colour, or one per bar
    opacity: float = 1.0
    size: float = 8.0                # marker size in plotly px (the PNG scales it)
    symbol: str = "circle"           # circle | x | star
    edge: float = 0.0                # dark outline width
    err: tuple = ()                  # ± 1 sd per axis (x, y[, z]); None where absent
    text: list | None = None         # plotly hover text; bar labels
    group: str = ""                  # legend group (a regime's front and faded points)
    legend: bool = True


@dataclass
class FigureInfo:
    """Everything a renderer needs: layers or parallel axes, labels, sizes and the PNG name."""
    name: str                        # PNG file stem
    title: str
    caption: str
    layers: list[Layer] = field(default_factory=list)
    kind: str = "2d"                 # 2d | 3d | parallel
    labels: dict[str, str] = field(default_factory=dict)     # x / y / z axis titles
    png_labels: dict[str, str] = field(default_factory=dict) # shorter PNG axis titles where they differ
    png_title: str = ""
    xticks: tuple[list, list] | None = None
    hline: tuple[float, str] | None = None                   # (y, label)
    dims: list[dict] = field(default_factory=list)           # parallel axes: label, values, range, tick*
    line_regimes: list[str] = field(default_factory=list)    # parallel: regime of each line
    colors: dict[str, str] = field(default_factory=dict)
    height: int = 440                # plotly px
    png_size: tuple[float, float] = (5.2, 4.2)
    png_margins: dict | None = None
    legend: bool = True


# styles of the per-regime marks, per figure kind: (front, others)
STYLE_2D = (dict(opacity=1.0, size=11, edge=1.0), dict(opacity=FADED_ALPHA, size=8, edge=0.0))
STYLE_3D = (dict(opacity=1.0, size=7, edge=1.0), dict(opacity=0.3, size=4, edge=0.0))
STYLE_1D = (dict(opacity=1.0, size=13, edge=1.0), dict(opacity=0.45, size=9, edge=0.0))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def regime_colors(regimes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per regime (sorted names -> palette order, cycling)."""
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(sorted(set(map(str, regimes))))}


def fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def axis_label(key: str, direction: str) -> str:
    return f"{key} ({'higher' if direction == 'max' else 'lower'} is better)"


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


def pruned_xy(pruned: pd.DataFrame | None, *keys: str) -> list[np.ndarray]:
    """The pruned trials' last rung values of ``keys`` (rows with every key finite), one array per key."""
    cols = [f"rung/{k}" for k in keys]
    if pruned is None or not len(pruned) or not all(c in pruned.columns for c in cols):
        return [np.array([]) for _ in keys]
    vals = pruned[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    vals = vals[np.isfinite(vals).all(axis=1)]
    return [vals[:, i] for i in range(len(keys))]


def sd(points: pd.DataFrame, part: np.ndarray, key: str) -> list | None:
    """The ``"<key> sd"`` values of ``part`` (seeds aggregated, ``analysis/seeds.py``; NaN -> 0), or None."""
    col = key + " sd"
    if col not in points.columns:
        return None
    return np.nan_to_num(pd.to_numeric(points.loc[part, col], errors="coerce").to_numpy(float)).tolist()


def hover(points: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    out = []
    for _, r in points.iterrows():
        parts = [f"<b>trial {r.get('trial_id', '')}</b> ({r.get('regime', '')})"]
        parts += [f"{c}: {fmt(r[c])}" for c in cols if c in r.index]
        if isinstance(r.get("settings"), str) and r.get("settings"):
            parts.append(r["settings"].replace(", ", "<br>"))
        out.append("<br>".join(parts))
    return out


def regime_layers(points: pd.DataFrame, keys: Sequence[str], on_front: np.ndarray, colors: dict[str, str],
                  style: tuple[dict, dict], hover_cols: Sequence[str] = (), coords=None) -> list[Layer]:
    """The per-regime marks: the regime's front points (opaque, edged) and the rest (faded), with error bars.

    ``coords(points, part)`` gives the drawn coordinates (default: the ``keys`` columns)."""
    on_front = np.asarray(on_front, dtype=bool)
    text = np.asarray(hover(points, hover_cols), dtype=object)
    regimes = points["regime"].astype(str)
    out = []
    for regime in sorted(regimes.unique()):
        sel = (regimes == regime).to_numpy()
        first = True
        for part, st in ((sel & on_front, style[0]), (sel & ~on_front, style[1])):
            if not part.any():
                continue
            xyz = coords(points, part) if coords else [points.loc[part, k].tolist() for k in keys]
            out.append(Layer(*xyz, name=regime, color=colors.get(regime, "#333333"), group=regime, legend=first,
                             err=tuple(sd(points, part, k) for k in keys), text=text[part].tolist(), **st))
            first = False
    return out


def knee_layer(points: pd.DataFrame, keys: Sequence[str], knee: Any, size: float = 20) -> list[Layer]:
    if knee is None or knee not in points.index:
        return []
    return [Layer(*[[points.loc[knee, k]] for k in keys], name="knee", color="black", symbol="star", size=size,
                  edge=2.0)]


def front_2d(points: pd.DataFrame, x: str, y: str, dirs: dict[str, str], on_front: np.ndarray,
             colors: dict[str, str], knee: Any = None, hover_cols: Sequence[str] = (),
             pruned: pd.DataFrame | None = None) -> FigureInfo:
    """Scatter of ``points`` (rows = valid trials or settings) on ``x`` × ``y``; ``on_front`` = the pair's front."""
    layers = []
    px, py = pruned_xy(pruned, x, y)
    if len(px):
        layers.append(Layer(px.tolist(), py.tolist(), name=PRUNED_LABEL, symbol="x", color=PRUNED_COLOR, size=7,
                            opacity=0.5, text=[f"pruned: last rung {a:.3f}, {b:.3f}" for a, b in zip(px, py)]))
    layers += regime_layers(points, (x, y), on_front, colors, STYLE_2D, hover_cols)
    mask = np.asarray(on_front, dtype=bool)
    if mask.any():
        sx, sy = staircase(points.loc[mask, x].to_numpy(float), points.loc[mask, y].to_numpy(float), dirs[x], dirs[y])
        layers.append(Layer(sx.tolist(), sy.tolist(), name="front", mode="lines", color=EDGE, size=1.5, opacity=0.8))
    layers += knee_layer(points, (x, y), knee)
    cap = (f"{y} vs {x}: the front of this pair drawn as a line, trials off it faded; the star is the knee "
           "of the full front")
    if len(px) or (pruned is not None and len(pruned)):
        cap += "; grey crosses: pruned trials at their last rung (rung-subset values, never on a front)"
    return FigureInfo(f"front_{slug(x)}__{slug(y)}", f"{y} vs {x}", cap, layers,
                      labels={"x": axis_label(x, dirs[x]), "y": axis_label(y, dirs[y])})


def front_3d(points: pd.DataFrame, keys: Sequence[str], dirs: dict[str, str], on_front: np.ndarray,
             colors: dict[str, str], knee: Any = None, hover_cols: Sequence[str] = ()) -> FigureInfo:
    keys = list(keys[:3])
    layers = regime_layers(points, keys, on_front, colors, STYLE_3D, hover_cols)
    for layer in layers:
        if layer.opacity < 1:
            layer.name, layer.legend = layer.name + " (dominated)", True
    layers += knee_layer(points, keys, knee, size=12)
    return FigureInfo("front_3d", "Pareto front in 3-D (" + ", ".join(f"{k} {dirs[k]}" for k in keys) + ")",
                      "the first three objectives in 3-D (drag to rotate); front trials opaque", layers, kind="3d",
                      labels=dict(zip("xyz", keys)), png_title="front in 3-D (" + ", ".join(dirs[k] for k in keys) + ")",
                      height=560, png_size=(6.0, 5.0), png_margins=dict(left=0.0, right=0.95, bottom=0.02, top=0.93))


def objective_strip(points: pd.DataFrame, key: str, direction: str, on_front: np.ndarray, colors: dict[str, str],
                    hover_cols: Sequence[str] = ()) -> FigureInfo:
    """One objective: the trials per regime side by side (slightly spread), the best opaque."""
    regimes = sorted(points["regime"].astype(str).unique())
    pos = {r: i for i, r in enumerate(regimes)}

    def coords(pts: pd.DataFrame, part: np.ndarray):
        n = int(part.sum())
        spread = np.linspace(-0.15, 0.15, n) if n > 1 else np.zeros(n)
        base = np.array([pos[r] for r in pts.loc[part, "regime"].astype(str)], dtype=float)
        return [(base + spread).tolist(), pts.loc[part, key].tolist()]

    layers = regime_layers(points, (key,), on_front, colors, STYLE_1D, hover_cols, coords=coords)
    for layer in layers:
        layer.err = (None, layer.err[0])
        if layer.opacity < 1:
            layer.name, layer.legend = layer.name + " (others)", True
    return FigureInfo(f"objective_{slug(key)}", f"{key} per trial (single objective; best opaque)", f"{key} per trial",
                      layers, labels={"y": axis_label(key, direction)}, xticks=(list(range(len(regimes))), regimes),
                      png_title=f"{key} per trial", height=400, png_size=(max(4.0, 1.0 * len(regimes) + 2), 3.6),
                      legend=False)


def hypervolume_bars(hv: dict[str, float], colors: dict[str, str], overall: float | None = None) -> FigureInfo:
    names = list(hv)
    bars = Layer(names, [hv[n] for n in names], name="hypervolume", mode="bars",
                 color=[colors.get(n, "#333333") for n in names], text=[fmt(hv[n]) for n in names], legend=False)
    return FigureInfo("hypervolume_per_regime", "Hypervolume per regime (common reference point)",
                      "hypervolume of each regime's trials against the common reference point", [bars],
                      labels={"y": "hypervolume"}, hline=(overall, f"all regimes: {fmt(overall)}")
                      if overall is not None else None, height=380, png_size=(max(4.0, 0.9 * len(hv) + 2), 3.4),
                      png_margins=dict(left=0.16, right=0.97, bottom=0.2, top=0.88), legend=False)


def parallel_axes(front: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> list[dict]:
    """Per axis: label, values (floats), range, tickvals, ticktext. Categorical -> codes; NaN -> an "n/a" tick."""
    axes = []
    for col, label in columns:
        s = front[col]
        if s.isna().all():
            continue
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().sum() == s.notna().sum() and num.notna().any():
            axes.append(_numeric_axis(label, num.to_numpy(float)))
        else:
            text = s.astype(object).where(s.notna(), "n/a").astype(str)
            cats = sorted(text.unique())
            code = {c: i for i, c in enumerate(cats)}
            axes.append({"label": label, "values": text.map(code).to_numpy(float), "range": [-0.5, len(cats) - 0.5],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    return axes


def _numeric_axis(label: str, v: np.ndarray) -> dict:
    lo, hi = np.nanmin(v), np.nanmax(v)
    ax = {"label": label, "values": v, "range": [lo, hi] if hi > lo else [lo - 0.5, hi + 0.5]}
    if np.isnan(v).any():
        na = lo - 0.15 * ((hi - lo) or 1.0)
        ax.update(values=np.where(np.isnan(v), na, v), range=[na, ax["range"][1]], tickvals=[na, lo, hi],
                  ticktext=["n/a", fmt(lo), fmt(hi)])
    return ax


def parallel(front: pd.DataFrame, columns: Sequence[tuple[str, str]], colors: dict[str, str]) -> FigureInfo:
    return FigureInfo("parallel_front", "Pareto-optimal settings (one line per trial, coloured by regime: "
                      + ", ".join(sorted(colors)) + ")", "Pareto-optimal settings: one line per front trial",
                      kind="parallel", dims=parallel_axes(front, columns),
                      line_regimes=front["regime"].astype(str).tolist(), colors=colors,
                      png_title="Pareto-optimal settings", height=460)
