"""Small HTML pieces of the sweep report: value formatting, links, tables, images as data URIs."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, pd.Timestamp):
        return "" if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def e(v: Any) -> str:
    return html.escape(fmt(v))


def link(url: str, text: str) -> str:
    if not url:
        return html.escape(text)
    return f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(text)}</a>'


def table(df: pd.DataFrame, cols: Sequence[str], link_col: str | None = None, id_col: str = "trial_id") -> str:
    """``cols`` of ``df`` as a table; numbers right-aligned, ``id_col`` linked to ``link_col``'s URL."""
    if not len(df):
        return '<p class="muted">(none)</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r.get(c)
            if c == id_col and link_col:
                cells.append(f"<td>{link(str(r.get(link_col) or ''), fmt(v))}</td>")
            else:
                num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                cells.append(f'<td class="num">{e(v)}</td>' if num else f"<td>{e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def note(text: str) -> str:
    return f'<div class="note">{html.escape(text)}</div>'


def muted(inner_html: str) -> str:
    return f'<p class="muted">{inner_html}</p>'
