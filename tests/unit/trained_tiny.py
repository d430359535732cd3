"""Test helper: a tiny CNN trained for a few seconds on the embedded ``shapes`` data (16 px, 6 classes, large
objects), so attacks meet a real decision surface (some images robust at the eval ε) at CPU-test cost."""
import functools

import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import DatasetConfig
from trainables.data import build_dataset


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 16, 6))


def _tensors(split):
    xs = torch.stack([split[i]["image"] for i in range(len(split))])
    ys = torch.tensor([int(split[i]["label"]) for i in range(len(split))])
    return xs, ys


def dataset(n: int = 64, seed: int = 0):
    return build_dataset(DatasetConfig(name="shapes", seed=seed, image_size=16, params={
        "num_classes": 6, "n_train": 600, "n_test": n, "min_size": 0.5, "max_size": 0.9}))


@functools.lru_cache(maxsize=None)
def trained(n: int = 64, epochs: int = 30, seed: int = 0):
    """``(model, x, y)``: the eval-mode model (no BN) trained on 600 shapes and ``n`` test images with labels."""
    data = dataset(n, seed)
    xs, ys = _tensors(data.split("train"))
    torch.manual_seed(seed)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(epochs):
        for i in torch.randperm(len(xs)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xs[i]), ys[i]).backward()
            opt.step()
    x, y = _tensors(data.split("test"))
    return model.eval(), x, y
