"""Corruption family (``corruption`` group): top-1 accuracy under ImageNet-C common corruptions (Top-GAP Table 5).

``shift/corruption/<type>``: accuracy on the whole test split with each image corrupted by ``<type>`` at
``evaluation.corruption.severity`` (default 1); ``shift/corruption``: the mean over the configured types (a mean
of per-type accuracies, as ImageNet-C's mean corruption accuracy). The corruptions are batched torch functions
(``_corruptions.py``, checked against the reference ``imagecorruptions`` package) applied on the device, batch by
batch; the random ones draw from a generator per type seeded by ``evaluation.seed`` (``EvalContext.generator``),
so a trial's numbers are reproducible and a key computed alone equals the full evaluation's.
"""
from __future__ import annotations

import torch

from trainables.evaluation._corruptions import CORRUPTIONS
from trainables.evaluation.base import Batch, Family, register_family
from trainables.metrics.keys import MetricKey, register_key

KEY = "shift/corruption"


def type_key(name: str) -> str:
    return f"{KEY}/{name}"


def _register_keys() -> tuple[str, ...]:
    register_key(MetricKey(KEY, "max", "corruption", "mean top-1 accuracy over the common corruption types "
                                                     "(evaluation.corruption)"))
    for name in CORRUPTIONS.names():
        register_key(MetricKey(type_key(name), "max", "corruption", f"top-1 accuracy under {name} (ImageNet-C)"))
    return (KEY, *map(type_key, CORRUPTIONS.names()))


@register_family("corruption")
class Corruption(Family):
    group = "corruption"
    keys = _register_keys()
    split = "full"
    needs = ()

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        return (KEY, *map(type_key, cfg.evaluation.corruption.types))

    def _types(self) -> list[str]:
        types = self.ctx.cfg.evaluation.corruption.types
        return list(types) if KEY in self.want else [t for t in types if type_key(t) in self.want]

    @torch.no_grad()
    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, y, severity = batch["image"], batch["label"], self.ctx.cfg.evaluation.corruption.severity
        out = {}
        for name in self._types():
            xc = CORRUPTIONS.get(name)(x, severity, self.ctx.generator(f"corruption/{name}"))
            out[type_key(name)] = (self.ctx.model(xc).argmax(1) == y).float()
        return out

    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        from trainables.evaluation.base import nanmean

        per_type = nanmean(values, [type_key(t) for t in self._types()])
        out = {k: v for k, v in per_type.items() if k in self.want}
        if KEY in self.want and per_type and len(per_type) == len(self._types()):
            out[KEY] = sum(per_type.values()) / len(per_type)
        return out

    def settings(self) -> dict:
        c = self.ctx.cfg.evaluation.corruption
        return {"severity": c.severity, "types": ",".join(c.types)}
