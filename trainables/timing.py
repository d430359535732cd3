"""Wall-clock stamps of a trial's phases (``arx bench overhead``, ``cost/overhead_seconds``).

The trial driver (``trainable.py``) stamps ``trial_start``, ``trainer_start``, ``fit_end`` and ``trial_end``;
rank 0 of the worker (``entry.py``, ``loop.py``) stamps ``worker_start``, ``loop_imported``, ``data_built``, ``loop_start`` (model built,
checkpoint restored), ``first_step``, ``eval_end`` and ``final_report`` and sends them with its final result as
``timing/<name>`` metrics. Stamps are ``time.time()`` seconds (one clock per node; rank 0 and the driver of a
local trial share it). Training + evaluation ("compute") is ``loop_start -> eval_end`` (what
``cost/device_seconds`` counts per worker); everything else a trial holds its workers for is overhead.
"""
from __future__ import annotations

import time

PREFIX = "timing/"
# (phase, from stamp, to stamp): consecutive, so the phases sum to trial_end - trial_start
PHASES = (("mlflow_setup", "trial_start", "trainer_start"), ("workers_ready", "trainer_start", "worker_start"),
          ("imports", "worker_start", "loop_imported"),
          ("dataset", "loop_imported", "data_built"), ("model", "data_built", "loop_start"),
          ("compute", "loop_start", "eval_end"), ("final_logging", "eval_end", "final_report"),
          ("report_to_fit_end", "final_report", "fit_end"), ("close", "fit_end", "trial_end"))
OVERHEAD_PHASES = tuple(p for p, _, _ in PHASES if p != "compute")


def stamp(stamps: dict, name: str) -> None:
    stamps[PREFIX + name] = time.time()


def phases(stamps: dict) -> dict[str, float]:
    """Seconds of every phase (``PHASES``) plus ``wall``, ``overhead``, ``overhead_share`` and ``first_step``
    (``loop_start`` -> end of the first training step, a part of compute); a phase with a missing stamp is
    absent."""
    s = {k.removeprefix(PREFIX): v for k, v in stamps.items() if k.startswith(PREFIX)}
    out = {p: s[b] - s[a] for p, a, b in PHASES if a in s and b in s}
    if "trial_start" in s and "trial_end" in s and "compute" in out:
        out["wall"] = s["trial_end"] - s["trial_start"]
        out["overhead"] = out["wall"] - out["compute"]
        out["overhead_share"] = out["overhead"] / out["wall"] if out["wall"] > 0 else 0.0
    if "first_step" in s and "loop_start" in s:
        out["first_step"] = s["first_step"] - s["loop_start"]
    return out


def overhead_seconds(stamps: dict, now: float | None = None) -> float | None:
    """Trial wall time up to ``now`` minus training and evaluation; None without the stamps it needs."""
    s = {k.removeprefix(PREFIX): v for k, v in stamps.items() if k.startswith(PREFIX)}
    if not {"trial_start", "loop_start", "eval_end"} <= set(s):
        return None
    return (now or time.time()) - s["trial_start"] - (s["eval_end"] - s["loop_start"])


def overhead_line(overheads, walls) -> str | None:
    """One line on a sweep's trial overhead from the trials' ``cost/overhead_seconds`` and
    ``cost/trial_wall_seconds`` (pairs with a missing or non-finite value are left out); None without any."""
    import math
    import statistics

    pairs = [(float(o), float(w)) for o, w in zip(overheads, walls)
             if o is not None and w is not None and math.isfinite(float(o)) and math.isfinite(float(w)) and float(w) > 0]
    if not pairs:
        return None
    share = sum(o for o, _ in pairs) / sum(w for _, w in pairs)
    return (f"trial overhead: {share:.0%} of the summed trial wall time outside training and evaluation "
            f"(median {statistics.median(o for o, _ in pairs):.1f} s per trial, {len(pairs)} trial(s))")
