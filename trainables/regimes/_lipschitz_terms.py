"""Loss terms of the Lipschitz regime (lipschitz paper, §III-B and §III-E; ALGORITHMS.md §5.1).

Pure tensor functions, no state: which output each image regularises (``select_outputs``), the scalars
whose input gradients are penalised (``selected_scalars``), the penalty on given gradients
(``gradient_penalty``, eq. 9 and its q / dead-zone variants), the double-backprop wrapper (``l_adv``),
output zeroing (``output_zeroing``, eq. 12) and the k_out guideline (``k_out_guideline``, eq. 14).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from trainables.regimes.base import full_precision  # noqa: F401  (also imported from here by lipschitz.py)

ZetaMode = Literal["true", "tandem", "tandem_sum"]


def select_outputs(batch: int, num_classes: int, k: int, device=None, generator=None) -> torch.Tensor:
    """K distinct output indices per image, uniform without replacement: ``[B, K]`` int64 (eq. 9, v_k)."""
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be in [1, {num_classes}] (the number of outputs), got {k}")
    return torch.rand(batch, num_classes, device=device, generator=generator).topk(k, dim=1).indices


def selected_scalars(logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, use_label: torch.Tensor | None = None,
                     mode: ZetaMode = "tandem") -> torch.Tensor:
    """The scalars s[b, k] whose input gradients L_adv penalises: ``[B, K]``.

    ``logits``: [B, V] pre-softmax outputs; ``idx``: [B, K] drawn outputs; ``use_label``: [B, K] bool, the
    draws replaced by the label-based term (the ζ share): ``"true"`` -> y_t; ``"tandem"`` -> y_t − max_{i≠t} y_i
    (L_adv,tandem, as the authors' code); ``"tandem_sum"`` -> y_t + max_{i≠t} y_i (Table II "with sum").
    """
    s = logits.gather(1, idx)
    if use_label is None:
        return s
    y_t = logits.gather(1, y[:, None])
    if mode == "true":
        alt = y_t
    else:
        others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1, keepdim=True)
        alt = y_t - others if mode == "tandem" else y_t + others
    return torch.where(use_label, alt.expand_as(s), s)


def gradient_penalty(grads: torch.Tensor, psi, z: float = 2.0, q: float = 0.0, sigma: float = 0.0) -> torch.Tensor:
    """L_adv of eq. 9 from given input gradients ``grads``: [K, B, *input] (g = ∂s_k/∂x of each image).

    Per image: ψ/(K·N) Σ_k (Σ_l a_kl)^q Σ_j a_kj^z with a = max(|g| − σ, 0) (σ: dead zone; q: the summed
    variant L_adv,z,q), averaged over the batch. a^0 is taken as 1 (also for a = 0). Returns a 0-d tensor.
    """
    a = grads.abs().flatten(2)
    if sigma > 0:
        a = torch.relu(a - sigma)
    k, n = a.shape[0], a.shape[2]
    if z == 0:
        per = torch.full(a.shape[:2], float(n), dtype=a.dtype, device=a.device)
    elif z == 2:
        per = a.square().sum(2)
    else:
        per = a.pow(z).sum(2)
    if q != 0:
        per = per * a.sum(2).pow(q)
    return psi * per.sum(0).mean() / (k * n)


def l_adv(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, psi, k: int = 1, z: float = 2.0,
          q: float = 0.0, sigma: float = 0.0, zeta: float = 0.0, zeta_mode: ZetaMode = "tandem",
          idx: torch.Tensor | None = None, use_label: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 9 by double backprop: one ``autograd.grad(create_graph=True)`` per drawn output (K passes).

    ``x``: the [B,C,H,W] input in [0,1] that produced ``logits`` (requires grad); gradients are taken of
    Σ_b s[b, k] w.r.t. the pixel-space input (as the authors' code; in train mode BatchNorm couples the
    images of a batch). ``idx`` / ``use_label`` fix the draws (tests); by default they are sampled here.
    """
    b, v = logits.shape
    if idx is None:
        idx = select_outputs(b, v, k, device=logits.device)
    if use_label is None and zeta > 0:
        use_label = torch.rand(idx.shape, device=logits.device) < zeta
    s = selected_scalars(full_precision(logits), y, idx, use_label, zeta_mode)
    grads = [torch.autograd.grad(s[:, j].sum(), x, create_graph=True)[0] for j in range(idx.shape[1])]
    return gradient_penalty(torch.stack(grads) if len(grads) > 1 else grads[0][None], psi, z, q, sigma)


def output_zeroing(logits: torch.Tensor, k_out: float) -> torch.Tensor:
    """L_out = k_out Σ_i y_i² on pre-softmax outputs (eq. 12), averaged over the batch (R)."""
    return k_out * full_precision(logits).square().sum(1).mean()


def k_out_guideline(num_classes: int, s_t: float = 0.8) -> float:
    """Eq. 14: k_out = (1 − s_t) / (2 y_t (1 + (V − 1)(1 − s_t))), y_t = ln(s_t (V − 1)/(1 − s_t)).

    0.009966 for V = 10, 0.001034 for V = 80, 6.005e-5 for V = 1000 (s_t = 0.8).
    """
    if not 0 < s_t < 1 or num_classes < 2:
        raise ValueError("k_out_guideline needs 0 < s_t < 1 and num_classes >= 2")
    y_t = math.log(s_t * (num_classes - 1) / (1 - s_t))
    if y_t <= 0:
        raise ValueError(f"s_t = {s_t} is below chance for {num_classes} classes: no positive y_t")
    return (1 - s_t) / (2 * y_t * (1 + (num_classes - 1) * (1 - s_t)))
