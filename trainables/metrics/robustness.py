"""Robustness metrics: pure functions of tensors (ALGORITHMS.md §2.3, §5.4).

Per-image indicators (``[B]`` float 0/1, averaged by the evaluation suite):
- ``correct(logits, y)``: top-1 prediction equals the label (seeds 000/002/003: "robust accuracy").
- ``agree(logits_adv, logits_clean)``: prediction unchanged by the attack (Top-GAP's label-free definition).
- ``topk_correct(logits, y, k)``: the label is among the k largest logits (top-5 under attack).

Accuracy-robustness areas (lipschitz-adversarial-explanations §II-A, §III-A; stable signatures):
- ``ara(distances, naive)``: exact ∫₀^∞ max(0, A(r) − N) dr with A(r) = (1/n) Σ_i 1[d_i > r], i.e.
  Σ_k (d_(k) − d_(k−1))·max(0, (n − k + 1)/n − N) over the sorted distances, d_(0) = 0. ``distances``: one
  minimal successful RMSE per evaluated image, **0 for an initially misclassified image** (the paper's list);
  ``naive``: the naive classifier's accuracy N (1/V for balanced classes, the majority-class rate otherwise).
  The same function gives the attack ARA (distances from goal g_adv) and the BTR ARA (distances from goal
  g_btr, whose threshold is the random classifier's 1/V; the area baseline stays the naive N).
- ``ara_histogram(distances, naive, bins=1000)``: the authors' code's approximation (``calculate-ara``:
  right-endpoint sum over a histogram on [0, max d]); a slight under-estimate, for comparison only.
- ``accuracy_curve(distances, radii)``: A(r) for plotting.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def correct(logits: Tensor, y: Tensor) -> Tensor:
    """``[B,V], [B] -> [B]``: 1.0 where argmax == label."""
    return (logits.argmax(1) == y).float()


def agree(logits_adv: Tensor, logits_clean: Tensor) -> Tensor:
    """``[B,V], [B,V] -> [B]``: 1.0 where the attack left the predicted class unchanged."""
    return (logits_adv.argmax(1) == logits_clean.argmax(1)).float()


def topk_correct(logits: Tensor, y: Tensor, k: int = 5) -> Tensor:
    """``[B,V], [B] -> [B]``: 1.0 where the label is among the top-k classes (k capped at V)."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == y[:, None]).any(1).float()


def _check(distances: Tensor, naive: float) -> Tensor:
    d = torch.as_tensor(distances, dtype=torch.float64).flatten()
    if d.numel() == 0:
        raise ValueError("ARA needs at least one distance")
    if not torch.isfinite(d).all() or (d < 0).any():
        raise ValueError("ARA distances must be finite and >= 0 (0 for initially misclassified images)")
    if not 0 <= naive < 1:
        raise ValueError(f"naive accuracy must be in [0, 1), got {naive}")
    return d


def ara(distances: Tensor, naive: float) -> float:
    """Exact accuracy-robustness area above the naive accuracy ``naive`` (see module docstring).

    [0, .01, .02, .03, .04] with N = 0.1 -> 0.016; [0.02] × 10 -> 0.018 (ALGORITHMS.md §5.6).
    """
    d = _check(distances, naive).sort().values
    n = d.numel()
    gaps = torch.diff(d, prepend=d.new_zeros(1))
    above = ((n - torch.arange(n, dtype=torch.float64)) / n - naive).clamp(min=0)  # (n-k+1)/n - N, k = 1..n
    return float((gaps * above).sum())


def ara_histogram(distances: Tensor, naive: float, bins: int = 1000) -> float:
    """The authors' approximation: ``gap·Σ_bins max(0, 1 − cumsum(hist)/n − N)`` on [0, max d] (float32)."""
    d = _check(distances, naive).float()
    top = float(d.max())
    if top == 0:
        return 0.0
    hist = d.histc(bins, min=0, max=top)
    return float(top / bins * (1 - hist.cumsum(0) / d.numel() - naive).clamp(min=0).sum())


def accuracy_curve(distances: Tensor, radii: Tensor) -> Tensor:
    """A(r) = share of images whose minimal distance exceeds r, for each radius in ``radii``."""
    d = torch.as_tensor(distances, dtype=torch.float64).flatten()
    r = torch.as_tensor(radii, dtype=torch.float64).flatten()
    return (d[None, :] > r[:, None]).double().mean(1)
