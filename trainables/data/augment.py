"""Training augmentation (``dataset.augment``): named presets, batched on the training device with kornia.

| preset | transform (per image, on the letterboxed ``image_size`` batch) | papers |
|---|---|---|
| ``none`` | identity | the embedded datasets' default (the demo's numbers stay comparable) |
| ``flip`` | horizontal flip, p = 0.5 | |
| ``cifar`` | zero-pad 4 px on every side, random ``image_size`` crop, horizontal flip p = 0.5 | CIFAR-10 / F-MNIST |
| ``imagenet`` | random-resized crop (area 8-100 %, aspect 3/4-4/3) back to ``image_size``, flip p = 0.5 | ImageNet-style |

Defaults per dataset (``augment: null``): ``DEFAULTS`` below; any other dataset: ``none``.
Training batches only (evaluation never augments). Seeded: the parameters of a batch are drawn from a
generator seeded with (trial seed, epoch, DDP rank, step) — a trial is reproducible, each epoch draws
differently, and each rank augments its own shard with its own stream; the global RNG is left untouched.
Boxes and masks are not transformed (they are only used in evaluation).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

PRESETS = ("none", "flip", "cifar", "imagenet")
DEFAULTS = {"cifar10": "cifar", "fmnist": "cifar", "imagenette": "imagenet", "pets": "imagenet",
            "cub": "imagenet", "waterbirds": "imagenet"}


def preset_for(dataset_cfg) -> str:
    """The preset a dataset config trains with: ``dataset.augment`` or the dataset's default."""
    return dataset_cfg.augment or DEFAULTS.get(dataset_cfg.name, "none")


@lru_cache(maxsize=16)
def _pipeline(preset: str, size: int):
    import kornia.augmentation as K

    steps = {
        "flip": [K.RandomHorizontalFlip(p=0.5)],
        "cifar": [K.RandomCrop((size, size), padding=4, fill=0), K.RandomHorizontalFlip(p=0.5)],
        "imagenet": [K.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
                     K.RandomHorizontalFlip(p=0.5)],
    }[preset]
    return K.AugmentationSequential(*steps, data_keys=["input"])


def batch_seed(seed: int, epoch: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, step]).generate_state(1)[0])


def augment(x: torch.Tensor, preset: str, seed: int, epoch: int, step: int, rank: int = 0) -> torch.Tensor:
    """``x`` ``[B,C,H,W]`` augmented with ``preset``, reproducibly for (seed, epoch, rank, step)."""
    if preset == "none":
        return x
    pipe = _pipeline(preset, x.shape[-1]).to(x.device)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # kornia draws from the global RNG: fork and seed it
        torch.manual_seed(batch_seed(seed, epoch, rank, step))
        with torch.no_grad():
            return pipe(x.float()).to(x.dtype)


def augment_batch(x: torch.Tensor, cfg, epoch: int, step: int) -> torch.Tensor:
    """The training-loop hook: ``cfg`` is the ``TrialConfig``; the rank comes from torch.distributed."""
    preset = preset_for(cfg.dataset)
    if preset == "none":
        return x
    dist = torch.distributed
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return augment(x, preset, cfg.seed, epoch, step, rank)
