"""The rung table of a sweep's early stopping, persisted next to the Tune experiment (issue #15).

Tune does not save a scheduler's state: the table is written atomically (temporary file + ``os.replace``) after
every change to ``<results>/rungs/<experiment>.json`` (next to the Optuna study and the MLflow store of the
sweep's results directory, whatever the Ray storage is), so ``arx sweep --resume`` after a driver crash decides exactly as the uninterrupted sweep
would. JSON (NaN written as ``NaN``)::

    {"rungs": {"2": {"<trial id>": {"values": [...], "violation": 0.0, "keep": true, "seq": 1}}},
     "pruned": {"<trial id>": {"rung": 2, "device_seconds": 3.1, "saved_device_seconds": 6.2}}}
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sweeps.mo_rank import Record


def table_path(rungs_dir: str | Path, name: str) -> Path:
    """The rung table of Tune experiment ``name`` (``sweep_paths(...)["rungs"]``)."""
    return Path(rungs_dir) / f"{name}.json"


class RungTable:
    """Recorded rung results and decisions; ``path=None`` keeps it in memory only."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.rungs: dict[int, dict[str, dict]] = {}
        self.pruned: dict[str, dict] = {}
        if self.path and self.path.exists():
            data = json.loads(self.path.read_text())
            self.rungs = {int(r): dict(t) for r, t in data.get("rungs", {}).items()}
            self.pruned = dict(data.get("pruned", {}))

    def records(self, rung: int) -> list[Record]:
        return [Record(t, tuple(e["values"]), e["violation"]) for t, e in sorted(self.rungs.get(rung, {}).items())]

    def decision(self, rung: int, trial_id: str) -> bool | None:
        """The decision already taken for this trial at this rung (a restarted trial re-reports it), or None."""
        entry = self.rungs.get(rung, {}).get(trial_id)
        return None if entry is None else entry["keep"]

    def record(self, rung: int, rec: Record, keep: bool) -> None:
        """Record (or re-record with its decision) a rung result; ``seq`` numbers the results in the order the
        scheduler saw them, so each decision can be re-checked against the records it was taken on."""
        old = self.rungs.get(rung, {}).get(rec.trial_id)
        seq = old["seq"] if old else 1 + max((e["seq"] for t in self.rungs.values() for e in t.values()), default=0)
        self.rungs.setdefault(rung, {})[rec.trial_id] = {"values": list(rec.values), "violation": rec.violation,
                                                         "keep": keep, "seq": seq}
        self.save()

    def prune(self, trial_id: str, rung: int, device_seconds: float, saved: float) -> None:
        self.pruned[trial_id] = {"rung": rung, "device_seconds": device_seconds, "saved_device_seconds": saved}
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"rungs": {str(r): t for r, t in sorted(self.rungs.items())}, "pruned": self.pruned},
                          indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".arx_rungs.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
