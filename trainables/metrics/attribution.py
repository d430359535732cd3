"""Attribution-quality metrics (ALGORITHMS.md §3.4, §4.5): Gini, SSIM input stability, ROS, top-k
intersection, Kendall's τ and the IFIA top-k attribution attack (ROAD-AOPC: ``trainables.metrics.road``).

Pure, batched tensor functions on the model's device. Images ``x: [B,C,H,W]`` are in [0,1] pixel space
(normalisation lives in the model), labels ``y: [B]``; per-pixel maps are ``[B,H,W]``; every metric returns
one value per image (``[B]``, NaN where the image is not admitted by the metric's definition).
``explain(model, x, targets) -> [B,H,W]`` is an attribution map function, e.g.
``trainables.explain.gradients.vg_map``.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainables.explain.gradients import channel_map, ce_score, integrated_gradients

Explain = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# ---- sparseness ------------------------------------------------------------------------------------
def gini(attr: torch.Tensor, eps: float = 1e-7, normalise: bool = True) -> torch.Tensor:
    """Gini index (Chalasani et al.; Quantus ``Sparseness``) of ``|attr|`` per image ``[B,...] -> [B]``.

    ``G = Σ_k (2k - n - 1) a_(k) / (n Σ_k a_(k))`` over the ascending ``a``; Quantus divides by the max
    and adds 1e-7 first (``normalise=True, eps=1e-7``, the defaults); ``eps=0`` gives the plain formula.
    Range [0, 1 - 1/n].
    """
    a = attr.flatten(1).abs().double()
    if normalise:
        a = a / a.max(1, keepdim=True).values.clamp_min(torch.finfo(a.dtype).tiny)
    a = (a + eps).sort(1).values
    n = a.shape[1]
    k = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
    return (((2 * k - n - 1) * a).sum(1) / (n * a.sum(1))).to(attr.dtype)


# ---- input stability -------------------------------------------------------------------------------
def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7, data_range: float = 1.0,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of maps ``[B,H,W]`` -> ``[B]``, as ``skimage.metrics.structural_similarity`` with its
    defaults (uniform ``win_size`` window, sample covariance, borders cropped)."""
    if win_size % 2 == 0 or win_size > min(a.shape[-2:]):
        raise ValueError(f"ssim: win_size must be odd and at most the map size, got {win_size}")
    x, y = a[:, None].double(), b[:, None].double()

    def pool(t):
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = pool(x), pool(y)
    cov = win_size**2 / (win_size**2 - 1)
    vx, vy = cov * (pool(x * x) - ux * ux), cov * (pool(y * y) - uy * uy)
    vxy = cov * (pool(x * y) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).to(a.dtype)


def _max_normalise(m: torch.Tensor) -> torch.Tensor:
    return m / m.flatten(1).abs().max(1).values.clamp_min(1e-30)[:, None, None]


def ssim_stability(model: nn.Module, x: torch.Tensor, y: torch.Tensor, explain: Explain,
                   sigmas: Sequence[float], win_size: int = 5, data_range: float | None = None,
                   normalise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """SSIM between the map of ``x`` and of ``clip(x + N(0, σ²), 0, 1)`` for each σ -> ``[B,S]``.

    A pair is admitted only when the noisy prediction equals the label (§3.4; NaN otherwise). Maps are
    max-normalised with ``data_range=1`` (R) by default; ``normalise=False, data_range=2`` is the authors'.
    """
    data_range = data_range if data_range is not None else (1.0 if normalise else 2.0)
    prep = _max_normalise if normalise else (lambda m: m)
    e = prep(explain(model, x, y).detach())
    cols = []
    for sigma in sigmas:
        xn = (x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)).clamp(0, 1)
        with torch.no_grad():
            kept = model(xn).argmax(1) == y
        s = ssim(e, prep(explain(model, xn, y).detach()), win_size, data_range)
        cols.append(torch.where(kept, s, torch.full_like(s, float("nan"))))
    return torch.stack(cols, 1)


def ros_objective(e: torch.Tensor, e2: torch.Tensor, h: torch.Tensor, h2: torch.Tensor,
                  eps_min: float = 1e-6) -> torch.Tensor:
    """``‖(e - e')/(e + ε·[e = 0])‖₂ / max(‖h - h'‖₂, ε)`` per image (Agarwal et al. Eq. 34; Quantus)."""
    denom = e + eps_min * (e == 0).to(e.dtype)
    num = ((e - e2) / denom).flatten(1).norm(dim=1)
    return num / (h - h2).flatten(1).norm(dim=1).clamp_min(eps_min)


def relative_output_stability(model: nn.Module, x: torch.Tensor, y: torch.Tensor, explain: Explain,
                              samples: int = 5, low: float = 0.02, high: float = 0.2, eps_min: float = 1e-6,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """ROS (Quantus ``RelativeOutputStability`` defaults): max over ``samples`` perturbations
    ``x + U(low, high)`` (one-sided, no clipping) of ``ros_objective``; NaN for an image if any sample
    changes its prediction. Raw values (the smoothing paper reports log10 of the mean)."""
    with torch.no_grad():
        h = model(x)
    pred = h.argmax(1)
    e = explain(model, x, y).detach()
    worst = torch.full((len(x),), -math.inf, device=x.device, dtype=x.dtype)
    flipped = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(samples):
        xs = x + low + (high - low) * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            h2 = model(xs)
        flipped |= h2.argmax(1) != pred
        worst = torch.maximum(worst, ros_objective(e, explain(model, xs, y).detach(), h, h2, eps_min))
    return torch.where(flipped, torch.full_like(worst, float("nan")), worst)


# ---- attribution robustness (ART §4.5) ---------------------------------------------------------------
def topk_intersection(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """``|top_k(a) ∩ top_k(b)| / k`` per image, maps ``[B,...]`` -> ``[B]``."""
    a, b = a.flatten(1), b.flatten(1)
    in_a = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, 1).indices, True)
    return in_a.gather(1, b.topk(k, 1).indices).sum(1).to(a.dtype) / k


def _tied_pairs(keys: list[torch.Tensor]) -> torch.Tensor:
    """Pairs equal in every key, for rows sorted so that equal entries are adjacent -> ``[B]``."""
    first = keys[0]
    same = torch.ones_like(first[:, 1:], dtype=torch.bool)
    for key in keys:
        same &= key[:, 1:] == key[:, :-1]
    new_run = torch.cat([torch.ones_like(first[:, :1], dtype=torch.bool), ~same], 1)
    idx = torch.arange(first.shape[1], device=first.device).expand_as(first)
    start = torch.where(new_run, idx, torch.zeros_like(idx)).cummax(1).values
    return (idx - start).sum(1)


def _inversions(v: torch.Tensor) -> torch.Tensor:
    """Pairs ``i < j`` with ``v_i > v_j`` per row ``[B,n] -> [B]`` in O(n log n): a bottom-up merge sort
    whose merge counts, for each element of a right block, the larger elements of the left block."""
    b, n = v.shape
    size = 1 << max(0, (n - 1).bit_length())
    v = torch.cat([v, v.new_full((b, size - n), math.inf)], 1)
    total = torch.zeros(b, dtype=torch.int64, device=v.device)
    width = 1
    while width < size:
        blocks = v.view(b, -1, 2, width)
        left, right = blocks[:, :, 0].contiguous(), blocks[:, :, 1].contiguous()
        total += (width - torch.searchsorted(left, right, right=True)).sum((1, 2))
        v = blocks.reshape(b, -1, 2 * width).sort(-1).values.reshape(b, size)
        width *= 2
    return total


def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's τ-b of each pair of maps ``[B,...]`` -> ``[B]`` (= ``scipy.stats.kendalltau``, ties
    included; NaN for a constant map), in O(n log n) (Knight's algorithm, batched)."""
    a, b = a.flatten(1), b.flatten(1)
    n = a.shape[1]
    order = b.argsort(dim=1, stable=True)
    a1, b1 = a.gather(1, order), b.gather(1, order)
    order = a1.argsort(dim=1, stable=True)
    a2, b2 = a1.gather(1, order), b1.gather(1, order)  # sorted by a, ties in a by b
    discordant = _inversions(b2).double()
    ties_a = _tied_pairs([a2]).double()
    ties_b = _tied_pairs([b.sort(1).values]).double()
    ties_ab = _tied_pairs([a2, b2]).double()
    n0 = n * (n - 1) / 2
    concordant = n0 - ties_a - ties_b + ties_ab - discordant
    return ((concordant - discordant) / ((n0 - ties_a) * (n0 - ties_b)).sqrt()).to(a.dtype)


def kendall_tau_masked(a: torch.Tensor, b: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """τ-b of ``a·m`` and ``b·m``, ``m`` = 1 at ``idx [B,k]`` and 0 elsewhere (ART's attack criterion)."""
    m = torch.zeros_like(a.flatten(1)).scatter_(1, idx, 1.0)
    return kendall_tau(a.flatten(1) * m, b.flatten(1) * m)


def softplus_copy(model: nn.Module, beta: float = 50.0) -> nn.Module:
    """A copy of ``model`` whose piecewise-linear activations are smooth (ART's smooth network for attribution
    attacks; second derivatives of ReLU networks vanish): ``trainables.metrics.smooth.smooth_copy``."""
    from trainables.metrics.smooth import smooth_copy

    return smooth_copy(model, beta)


def _attack_map(model, x, y, steps, create_graph=False):
    """ART attack saliency: Σ_c |IG| of the label logit (right Riemann), normalised to sum H·W."""
    m = channel_map(integrated_gradients(model, x, y, steps, "riemann_right", create_graph=create_graph),
                    "sum_abs")
    return m * (m[0].numel() / m.flatten(1).sum(1).clamp_min(1e-30))[:, None, None]


def ifia_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 100, eps: float = 8 / 255,
                step: float = 1 / 255, steps: int = 10, ig_steps: int = 16, beta: float = 50.0,
                smooth_model: nn.Module | None = None, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k integrated-feature attack (Ghorbani et al.; ART's ``saliency_attackIG``, ALGORITHMS.md §4.5).

    From a uniform random start in the L-inf ε-box, sign steps descend the sum of the smooth network's
    attack saliency inside the clean image's top-k pixels (projection to the ε-box, clip to [0,1]). Before
    each update the iterate is scored by the masked Kendall τ of the ReLU network's maps; the returned
    iterate is the one with the lowest τ among those still classified as ``y``. Returns
    ``(x_adv [B,C,H,W], found [B])``; ``found`` is False when no iterate kept the prediction (x_adv = x).
    """
    smooth = smooth_model if smooth_model is not None else softplus_copy(model, beta)
    with torch.no_grad():
        clean = _attack_map(model, x, y, ig_steps).detach()
    idx = clean.flatten(1).topk(k, 1).indices
    mask = torch.zeros_like(clean.flatten(1)).scatter_(1, idx, 1.0)
    xt = (x + eps * (2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1)).clamp(0, 1)
    best, best_tau = x.clone(), torch.full((len(x),), math.inf, device=x.device, dtype=x.dtype)
    for _ in range(steps):
        with torch.no_grad():
            ok = model(xt).argmax(1) == y
        tau = kendall_tau_masked(_attack_map(model, xt, y, ig_steps).detach(), clean, idx)
        better = ok & (tau < best_tau)
        best = torch.where(better[:, None, None, None], xt, best)
        best_tau = torch.where(better, tau, best_tau)
        xg = xt.detach().requires_grad_(True)
        loss = (_attack_map(smooth, xg, y, ig_steps, create_graph=True).flatten(1) * mask).sum()
        (g,) = torch.autograd.grad(loss, xg)
        xt = (x + (xt - step * g.sign() - x).clamp(-eps, eps)).clamp(0, 1).detach()
    return best, torch.isfinite(best_tau)


def attribution_robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 100,
                           eps: float = 8 / 255, step: float = 1 / 255, steps: int = 10,
                           attack_ig_steps: int = 16, eval_ig_steps: int = 16, beta: float = 50.0,
                           smooth_model: nn.Module | None = None,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(top-k intersection [B], Kendall τ [B])`` of clean vs IFIA-attacked maps (ART §4.5).

    Evaluation maps: IG of the cross-entropy loss (ReLU network, trapezoid, zero baseline), per pixel
    mean over channels of |IG|. NaN for images the attack could not keep correctly classified. Call it
    on correctly classified images (the paper's protocol).
    """
    adv, found = ifia_attack(model, x, y, k, eps, step, steps, attack_ig_steps, beta, smooth_model, generator)

    def eval_map(z):
        return channel_map(integrated_gradients(model, z, y, eval_ig_steps, "trapezoid", score=ce_score),
                           "mean_abs")

    m_clean, m_adv = eval_map(x), eval_map(adv)
    nan = torch.full((len(x),), float("nan"), device=x.device, dtype=x.dtype)
    return (torch.where(found, topk_intersection(m_clean, m_adv, k), nan),
            torch.where(found, kendall_tau(m_clean, m_adv), nan))

