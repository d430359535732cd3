"""Renderers of ``analysis.figures.FigureInfo``: a plotly figure for the HTML report, a matplotlib PNG beside it.

What a figure shows and how it looks (rows per layer, colours, sizes, opacity, error bars, titles) is decided
once in ``analysis.figures``; here each ``Layer`` becomes one plotly trace or one matplotlib call. Libraries are
imported inside the functions (``import analysis.plots`` is cheap), and matplotlib figures are
``matplotlib.figure.Figure`` objects rendered with Agg (no pyplot state).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from analysis.figures import EDGE, PALETTE, FigureInfo, Layer, fmt

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
PLOTLY_SYMBOL = {"circle": "circle", "x": "x", "star": "star-open"}
PLOTLY_SYMBOL_3D = {"circle": "circle", "x": "x", "star": "diamond-open"}
PNG_MARKER = {"circle": "o", "x": "x", "star": "*"}
PNG_SIZE = 0.45           # matplotlib marker area per plotly px squared


# ---------------------------------------------------------------------------------------------------
# plotly
# ---------------------------------------------------------------------------------------------------
def to_plotly(info: FigureInfo):
    """The plotly figure of ``info``."""
    import plotly.graph_objects as go

    if info.kind == "parallel":
        return _parcoords(info)
    fig = go.Figure([_trace(layer, info.kind) for layer in info.layers])
    layout = dict(title=info.title, height=info.height, template="plotly_white", legend=dict(font=dict(size=10)),
                  margin=dict(l=0, r=0, t=50, b=0) if info.kind == "3d" else dict(l=60, r=20, t=50, b=50),
                  showlegend=info.legend)
    if info.kind == "3d":
        layout["scene"] = {f"{a}axis_title": t for a, t in info.labels.items()}
    else:
        layout.update({f"{a}axis_title": t for a, t in info.labels.items()})
    if info.xticks:
        layout["xaxis"] = dict(tickvals=info.xticks[0], ticktext=info.xticks[1])
    fig.update_layout(**layout)
    if info.hline:
        fig.add_hline(y=info.hline[0], line_dash="dash", line_color="#444444", annotation_text=info.hline[1])
    return fig


def _err(values) -> dict | None:
    return None if values is None else dict(type="data", array=list(values), visible=True, thickness=1, width=3)


def _trace(layer: Layer, kind: str):
    import plotly.graph_objects as go

    if layer.mode == "bars":
        return go.Bar(x=layer.x, y=layer.y, marker_color=layer.color, text=layer.text, textposition="outside",
                      name=layer.name)
    common = dict(name=layer.name, showlegend=bool(layer.name) and layer.legend, legendgroup=layer.group or None)
    if layer.mode == "lines":
        return go.Scatter(x=layer.x, y=layer.y, mode="lines", line=dict(color=layer.color, width=layer.size),
                          hoverinfo="skip", **common)
    symbols = PLOTLY_SYMBOL_3D if kind == "3d" else PLOTLY_SYMBOL
    marker = dict(color=layer.color, size=layer.size, opacity=layer.opacity, symbol=symbols[layer.symbol],
                  line=dict(width=layer.edge, color="black" if layer.symbol == "star" else EDGE))
    hov = dict(text=layer.text, hovertemplate="%{text}<extra></extra>") if layer.text else dict(hoverinfo="skip")
    errs = {f"error_{a}": _err(e) for a, e in zip("xyz", layer.err) if e is not None}
    if kind == "3d":
        return go.Scatter3d(x=layer.x, y=layer.y, z=layer.z, mode="markers", marker=marker, **errs, **hov, **common)
    return go.Scatter(x=layer.x, y=layer.y, mode="markers", marker=marker, **errs, **hov, **common)


def _parcoords(info: FigureInfo):
    import plotly.graph_objects as go

    regimes = sorted(info.colors)
    code = [float(regimes.index(r)) if r in regimes else 0.0 for r in info.line_regimes]
    n = max(len(regimes), 1)
    scale = []
    for i, r in enumerate(regimes):
        scale += [[i / n, info.colors[r]], [(i + 1) / n, info.colors[r]]]
    dims = []
    for a in info.dims:
        d = dict(label=a["label"], values=np.asarray(a["values"]).tolist(), range=a["range"])
        if "tickvals" in a:
            d.update(tickvals=a["tickvals"], ticktext=a["ticktext"])
        dims.append(d)
    line = dict(color=code, colorscale=scale or [[0, PALETTE[0]], [1, PALETTE[0]]],
                cmin=-0.5 if n == 1 else 0, cmax=n - 1 if n > 1 else 0.5)
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(title=info.title, height=info.height, margin=dict(l=70, r=70, t=90, b=40),
                      template="plotly_white")
    return fig


def plotly_div(info: FigureInfo, div_id: str) -> str:
    """The figure as an HTML ``<div>`` (plotly.js is embedded once by the report, not here)."""
    return to_plotly(info).to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)


# ---------------------------------------------------------------------------------------------------
# matplotlib
# ---------------------------------------------------------------------------------------------------
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


def to_png(info: FigureInfo, out_dir: Path) -> Path:
    """Draw ``info`` into ``out_dir/<info.name>.png``."""
    path = Path(out_dir) / f"{info.name}.png"
    if info.kind == "parallel":
        return _parallel_png(info, path)
    fig, ax = _new_fig(*info.png_size, projection="3d" if info.kind == "3d" else None, margins=info.png_margins)
    for layer in info.layers:
        _draw(ax, layer)
    labels = {**info.labels, **info.png_labels}
    for axis, text in labels.items():
        getattr(ax, f"set_{axis}label")(text, **({"fontsize": 8} if info.kind == "3d" else {}))
    if info.xticks:
        ax.set_xticks(info.xticks[0])
        ax.set_xticklabels(info.xticks[1], fontsize=8)
    if info.hline:
        ax.axhline(info.hline[0], linestyle="--", color="#444444", linewidth=1, label=info.hline[1])
    if info.kind == "3d":
        _fit_3d(ax, info.layers)
    else:
        ax.grid(alpha=0.3)
    ax.set_title(info.png_title or info.title, fontsize=10)
    if info.legend or info.hline:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _draw(ax, layer: Layer) -> None:
    xyz = [layer.x, layer.y] + ([layer.z] if layer.z is not None else [])
    label = layer.name if layer.name and layer.legend else None
    if layer.mode == "bars":
        ax.bar(layer.x, layer.y, color=layer.color)
        for i, t in enumerate(layer.text or []):
            ax.text(i, layer.y[i], t, ha="center", va="bottom", fontsize=7)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        return
    if layer.mode == "lines":
        ax.plot(*xyz, color=layer.color, linewidth=layer.size * 0.8, alpha=layer.opacity, zorder=2, label=label)
        return
    if any(e is not None for e in layer.err):
        errs = dict(zip(("xerr", "yerr", "zerr"), layer.err))
        ax.errorbar(*xyz, **errs, fmt="none", ecolor=layer.color, alpha=min(layer.opacity, 0.8), elinewidth=0.8,
                    capsize=2, zorder=1)
    hollow = layer.symbol == "star"
    ax.scatter(*xyz, marker=PNG_MARKER[layer.symbol], s=PNG_SIZE * layer.size ** 2, alpha=layer.opacity,
               facecolors="none" if hollow else None, color=None if hollow else layer.color,
               edgecolors=layer.color if hollow else (EDGE if layer.edge else None),
               linewidths=layer.edge or (1 if layer.symbol == "x" else 0), zorder=4 if hollow else 3, label=label)


def _fit_3d(ax, layers: Sequence[Layer]) -> None:
    """Axis limits around every point (matplotlib's 3-D autoscale ignores error bars and pads poorly)."""
    pts = [(layer.x, layer.y, layer.z) for layer in layers if layer.z is not None]
    for i, setter in enumerate((ax.set_xlim, ax.set_ylim, ax.set_zlim)):
        v = np.concatenate([np.asarray(p[i], dtype=float) for p in pts]) if pts else np.array([0.0])
        lo, hi = float(np.min(v)), float(np.max(v))
        pad = 0.08 * (hi - lo) if hi > lo else 0.05 * (abs(hi) or 1.0)
        setter(lo - pad, hi + pad)


def _parallel_png(info: FigureInfo, path: Path) -> Path:
    axes = info.dims
    fig, ax = _new_fig(max(5.0, 1.4 * len(axes)), 4.2, margins=dict(left=0.04, right=0.93, bottom=0.25, top=0.9))
    xs = np.arange(len(axes))
    norm = np.array([(np.asarray(a["values"]) - a["range"][0]) / ((a["range"][1] - a["range"][0]) or 1.0)
                     for a in axes])                     # (axes, lines)
    seen = set()
    for j, r in enumerate(info.line_regimes):
        ax.plot(xs, norm[:, j], color=info.colors.get(r, "#333333"), alpha=0.8, linewidth=1.4,
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
    ax.set_title(info.png_title or info.title, fontsize=10)
    if seen:
        ax.legend(fontsize=7, loc="upper right")
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
