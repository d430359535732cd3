"""Shift family: ``shift/<name>/acc`` for each ``evaluation.shift`` entry (accuracy group).

The trained model's top-1 accuracy on the test split of another dataset with the same classes (same class
indices, same names where both datasets know them): CUB -> Waterbirds (``waterbirds`` with ``params.target:
species``), ImageNet -> ImageNet-Sketch / -C, or ``shapes`` with its spurious cue removed from the test split.
It is the accuracy family run directly on that dataset (``evaluate(..., keys=["acc/top1"])``, whole test
split, DDP-sharded like every pass), so the number equals ``acc/top1`` of a trial evaluated on it.
A class-count mismatch is a config error (``TrialConfig``); differing class names are found by the driver's
data check (``trainables/data/check.py``), both before any trial starts.
"""
from __future__ import annotations

import dataclasses

import torch

from trainables.evaluation.base import Batch, Family, register_family
from trainables.metrics.keys import MetricKey, register_key


def shift_key(name: str) -> str:
    return f"shift/{name}/acc"


def class_count_problem(trial) -> str | None:
    """One line when a shift dataset's class count differs from the trained model's, else None."""
    from trainables.data import build_dataset

    for s in trial.evaluation.shift:  # every process that parses the config knows the keys (rung evaluations)
        _register(s.name)
    n = trial.model.num_classes or build_dataset(trial.dataset).num_classes
    for s in trial.evaluation.shift:
        m = build_dataset(s.dataset).num_classes
        if m != n:
            return (f"evaluation.shift {s.name!r}: dataset {s.dataset.name!r} has {m} classes, the model is trained "
                    f"on {n}; a shift dataset must use the same class mapping (e.g. waterbirds params.target: "
                    f"species for a cub model)")
    return None


def class_name_problem(trial) -> str | None:
    """One line when a shift dataset names its classes differently (datasets that know their names)."""
    from trainables.data import build_dataset

    names = build_dataset(trial.dataset).class_names
    for s in trial.evaluation.shift:
        other = build_dataset(s.dataset).class_names
        differ = [i for i, (a, b) in enumerate(zip(names, other)) if a.lower() != b.lower()]
        if differ and not all(a.isdigit() or b.isdigit() for a, b in zip(names, other)):
            i = differ[0]
            return (f"evaluation.shift {s.name!r}: class {i} is {other[i]!r} in {s.dataset.name!r} but "
                    f"{names[i]!r} in {trial.dataset.name!r}; expected the same class mapping")
    return None


@register_family("shift")
class Shift(Family):
    group = "accuracy"
    keys = ()
    split = "full"
    needs = ()

    @classmethod
    def all_keys(cls) -> tuple[str, ...]:
        return tuple(k for k in _registered)

    @classmethod
    def configured(cls, cfg) -> tuple[str, ...]:
        for s in cfg.evaluation.shift:
            _register(s.name)
        return tuple(shift_key(s.name) for s in cfg.evaluation.shift)

    def per_image(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {}  # its own pass over each shift dataset, in reduce

    def reduce(self, values) -> dict[str, float]:
        from trainables.evaluation.suite import evaluate

        out = {}
        for s in self.ctx.cfg.evaluation.shift:
            if shift_key(s.name) not in self.want:
                continue
            data = self.ctx.shared(f"shift:{s.name}", lambda s=s: _test_split(s.dataset))
            ctx = dataclasses.replace(self.ctx, tags={}, artifacts={}, settings={}, _shared={})
            got = evaluate(ctx, data, self.ctx.rank, self.ctx.world, keys=["acc/top1"])
            if "acc/top1" in got:
                out[shift_key(s.name)] = got["acc/top1"]
        return out

    def settings(self) -> dict:
        return {f"{s.name}.dataset": s.dataset.name for s in self.ctx.cfg.evaluation.shift}


_registered: list[str] = []


def _register(name: str) -> None:
    key = shift_key(name)
    if key not in _registered:
        register_key(MetricKey(key, "max", "accuracy", f"top-1 accuracy on the shift dataset {name!r}"))
        _registered.append(key)


def _test_split(cfg):
    from trainables.data import build_dataset

    return build_dataset(cfg).split("test")
