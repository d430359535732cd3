"""A per-node disk cache of generated dataset splits (issue #16): embedded datasets (``shapes``, ``digits``) are
drawn once per node and dataset config, not once per trial and worker.

The key hashes the dataset class, the generating module's source, image size, seed, the validated params and the
split; entries are the split's tensors (``torch.save``, read back with ``weights_only=True``), written atomically,
so a hit is bit for bit what the generator returns. Where: ``ARX_DATA_CACHE`` (a directory; ``0``: off), default
``<tmp>/arx-data-cache``; the trial driver resolves it and passes it to its workers.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path

import torch

FIELDS = ("images", "labels", "boxes", "masks")


def cache_dir() -> str | None:
    """The cache directory for this trial's workers, or None (off)."""
    value = os.environ.get("ARX_DATA_CACHE", "")
    if value.lower() in ("0", "off", "false", "no"):
        return None
    return value or str(Path(tempfile.gettempdir()) / "arx-data-cache")


def split_key(spec, split: str) -> str:
    source = Path(inspect.getsourcefile(type(spec))).read_bytes()
    ident = {"class": f"{type(spec).__module__}.{type(spec).__qualname__}", "image_size": spec.cfg.image_size,
             "seed": spec.cfg.seed, "params": spec.params.model_dump(mode="json"), "split": split,
             "source": hashlib.sha256(source).hexdigest()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def cached_split(spec, split: str, generate):
    """``generate(split)`` through the cache in ``spec.cache_dir`` (None: no cache)."""
    from trainables.data.base import TensorSplit

    if not getattr(spec, "cache_dir", None):
        return generate(split)
    path = Path(spec.cache_dir) / f"{type(spec).__name__.lower()}-{split_key(spec, split)}.pt"
    try:
        return TensorSplit(**torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # noqa: BLE001 - missing, partial or unreadable: draw it again and rewrite
        pass
    data = generate(split)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save({f: getattr(data, f) for f in FIELDS}, tmp)
    os.replace(tmp, path)  # atomic: concurrent workers never read a half-written entry
    return data
