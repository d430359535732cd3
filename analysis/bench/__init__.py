"""``arx bench``: performance ratios measured in one run (speed targets live here, never in unit tests).

Each suite is one module here with one registered function ``run(quick: bool) -> list[dict]``; every row
is ``{"bench": name, "ours_s": float, "peer_s": float | None, "ratio": float | None, "target": str, ...}``.
"""
from __future__ import annotations

from typing import Callable

from trainables.registry import Registry

BENCHES: Registry[Callable[..., list[dict]]] = Registry("benchmark", "analysis.bench")
register_bench = BENCHES.register
