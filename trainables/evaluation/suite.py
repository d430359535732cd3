"""The evaluation skeleton: model + test data [+ keys] -> flat dict of metrics (keys from ``metrics/keys.py``).

``evaluate(ctx, test_set, rank, world, keys=None)``: without ``keys`` the keys the configured groups' families
produce (``Family.configured``); with ``keys`` exactly those (any key a registered family produces; the
sweep's objectives at early-stopping rungs), computing only what they need. Families of the ``full`` split run
over the whole test split, the others over a fixed, seeded subset of ``evaluation.num_images`` images. Under
DDP every rank runs its shard and the per-image values are gathered, so nothing is computed twice. Rank 0
gets the per-image table in ``ctx.artifacts["per_image"]`` (test-split index, label, prediction, every
per-image value; NaN where a metric does not admit the image) and, in full evaluations, the figures.
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist

from trainables.evaluation.base import FAMILIES, Batch, EvalContext, Family, family_of

ROW = ("index", "label", "pred")


def subset_indices(n_test: int, num_images: int, seed: int) -> list[int]:
    """The fixed, seeded subset of test images the subset families use."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_test, generator=g)[: min(num_images, n_test)].sort().values.tolist()


def configured_keys(cfg) -> list[str]:
    return [k for n in FAMILIES.names() if FAMILIES.get(n).group in cfg.evaluation.groups
            for k in FAMILIES.get(n).configured(cfg)]


def plan(keys: list[str]) -> dict[type[Family], set[str]]:
    """Family -> the requested keys it produces (one line listing the valid keys for an unknown one)."""
    out: dict[type[Family], set[str]] = {}
    for key in keys:
        out.setdefault(family_of(key), set()).add(key)
    return out


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return {**self.dataset[self.indices[i]], "index": self.indices[i]}


def _gather(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-batch value dicts -> one tensor per key over all ranks (NaN where a batch lacks a key)."""
    keys = sorted({k for p in parts for k in p})
    n = [len(p["index"]) for p in parts]
    local = {k: torch.cat([p.get(k, torch.full((m,), float("nan"))) for p, m in zip(parts, n)]) if parts
             else torch.empty(0) for k in keys}
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered: list[dict] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, local)
    keys = sorted({k for part in gathered for k in part})
    size = [len(part.get("index", [])) for part in gathered]
    return {k: torch.cat([part.get(k, torch.full((m,), float("nan"))) for part, m in zip(gathered, size)])
            for k in keys}


def run_pass(families: list[Family], ctx: EvalContext, dataset, indices: list[int], figures: bool,
             progress=None) -> dict[str, torch.Tensor]:
    """Run ``families`` over this rank's shard of ``dataset[indices]``; gathered per-image values."""
    shard = _Indexed(dataset, indices[ctx.rank::ctx.world])
    loader = torch.utils.data.DataLoader(shard, batch_size=ctx.cfg.evaluation.batch_size)
    parts = []
    for i, raw in enumerate(loader):
        batch = Batch(ctx, {k: v.to(ctx.device, non_blocking=True) if torch.is_tensor(v) else v
                            for k, v in raw.items()})
        values = {"index": batch["index"], "label": batch["label"], "pred": batch.need("logits").argmax(1)}
        for fam in families:
            if i == 0 and ctx.rank == 0 and figures:
                fam.artifacts(batch.view(fam.needs))
            values |= fam.per_image(batch.view(fam.needs))
        parts.append({k: v.detach().reshape(-1).float().cpu() for k, v in values.items()})
        if progress:
            progress(",".join(type(f).name for f in families), i + 1, len(loader))
    return _gather(parts)


def evaluate(ctx: EvalContext, test_set, rank: int = 0, world: int = 1, progress=None,
             keys: list[str] | None = None) -> dict[str, float]:
    """The metrics of ``keys`` (default: the configured ones); the same dict on every rank."""
    ecfg, t0 = ctx.cfg.evaluation, time.perf_counter()
    ctx.rank, ctx.world = rank, world
    ctx.model.eval()
    todo = plan(list(keys) if keys is not None else configured_keys(ctx.cfg))
    subset = subset_indices(len(test_set), ecfg.num_images, ecfg.seed)
    metrics, tables = {}, []
    for split, indices in (("full", list(range(len(test_set)))), ("subset", subset)):
        fams = [cls(ctx, want) for cls, want in todo.items() if cls.split == split]
        if not fams:
            continue
        values = run_pass(fams, ctx, test_set, indices, figures=keys is None, progress=progress)
        tables.append(values)
        for fam in fams:
            metrics |= fam.reduce(values)
            ctx.tags |= {f"absent.{k}": fam.absent_reason(k) for k in sorted(fam.want) if k not in metrics}
            ctx.settings |= {f"evaluation.{type(fam).name}.{k}": v for k, v in fam.settings().items()}
    ctx.settings |= regime_settings(ctx)
    if rank == 0:
        ctx.artifacts["per_image"] = per_image_table(tables)
    metrics["cost/eval_seconds"] = time.perf_counter() - t0
    return metrics


def regime_settings(ctx: EvalContext) -> dict:
    """``regime.*``: the regime's validated params with every default filled in, and what it resolved
    (``Regime.effective(model)``, e.g. Top-GAP's k as a pixel count of the actual CAM)."""
    from trainables.config import flatten

    if ctx.regime is None:
        return {}
    resolved = getattr(ctx.regime, "effective", lambda model: {})(ctx.model)
    return {f"regime.{k}": v for k, v in flatten({**ctx.regime.params.model_dump(mode="json"), **resolved}).items()}


def per_image_table(tables: list[dict[str, torch.Tensor]]):
    """One row per evaluated test image (outer join of the passes on the test-split index; label and
    prediction of the first pass)."""
    import pandas as pd

    frames = [pd.DataFrame({k: v.numpy() for k, v in t.items()}).astype({r: "int64" for r in ROW})
              for t in tables if len(t.get("index", []))]
    if not frames:
        return pd.DataFrame({r: pd.Series(dtype="int64") for r in ROW})
    out = frames[0]
    for f in frames[1:]:
        out = out.merge(f.drop(columns=["label", "pred"]), on="index", how="outer")
    out = out[list(ROW) + sorted(c for c in out.columns if c not in ROW)]
    return out.sort_values("index").reset_index(drop=True)


__all__ = ["evaluate", "subset_indices", "configured_keys", "plan", "run_pass", "per_image_table"]
