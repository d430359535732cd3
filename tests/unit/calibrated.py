"""Test helper: a classifier whose eval-mode BN statistics are those of a given random batch."""
import torch
from torch import nn

from trainables.models import build_classifier


def calibrated(name: str = "smallcnn", classes: int = 5, size: int = 32, n: int = 16, seed: int = 0):
    """``(model, x, pred)``: an eval-mode Classifier whose BN running statistics are the batch's (so its
    predictions vary between images), the random batch ``x`` and the model's predictions on it."""
    torch.manual_seed(seed)
    m = build_classifier(name, classes)
    x = torch.rand(n, 3, size, size)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 1.0
    with torch.no_grad():
        m.train()(x)
        pred = m.eval()(x).argmax(1)
    return m, x, pred
