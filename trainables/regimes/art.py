"""ART: attributional robustness training (art-attributional-robustness-supp; ALGORITHMS.md §4.1-4.4).

The supplement lacks the main paper's Eq. 5, so the loss follows the authors' code (``cifar/loss_art.py``,
``cifar_robust_train.py``, ``saliency_pgd.py``), which ALGORITHMS.md §6 names the reference:

    d(a, b)   = 1 − a·b / ((‖a‖₂ + 1e-8)(‖b‖₂ + 1e-8))                    cosine distance
    g^c(u)    = ∂ f_c(u; Softplus_β) / ∂u                                  attribution of class c
    i*(u)     = argmax_{c≠y} f_c(u)                                        "second most likely" class
    ℓ         = softplus(d(u, g^y) − d(u, g^{i*}))                         soft-margin triplet (§4.1)
    L_attr    = mean over the 2B rows of [x; x̃] of ℓ, with ``mining: pair_hard`` (code): d_ap = the larger,
                d_an = the smaller distance over the image's clean and adversarial gradients (§4.3);
                ``own``: each row against its own gradients only
    loss      = CE(f(x̃; ReLU), y) + λ·L_attr                              (``ce_on: adv``, the code)

x̃ (§4.2): a = ``steps`` sign steps of size ``step_size`` from a uniform start in the L∞ ε-ball, ascending
the per-sample triplet loss restricted to the ``k_top`` input elements with the largest |∂f_y/∂x| at the
start (ReLU network; ``k_top: null`` = all elements), projected to the ball and clipped to [0,1]. No CE
term in the attack (supplement S3: adding it is a separate variant).

Input spaces (ALGORITHMS.md §0 pitfall 1, §6 seed 003 item 5). The model takes pixels in [0,1] and
normalises inside; ``N(x) = (x − μ)/σ``. Defaults = the authors' code:
- ``grad_space: normalized``: L_attr's gradients are taken w.r.t. N([x; x̃]);
- ``attack_grad_space: pixel``: the attack's gradients are taken w.r.t. the pixel-space x̃;
- ``image_space: normalized``: both align the gradient with the normalised image N(·).
Gradients w.r.t. pixels are those w.r.t. N(x) divided by σ per channel.

Softplus_β (β = 50) replaces every ``nn.ReLU`` module while a gradient term is computed, so second
derivatives are non-zero (backbones with smooth activations, e.g. SiLU/GELU, are used as they are); the
CE term and the evaluation use the ReLU network. The attack and L_attr run in float32 (autocast off):
double backward through fp16 is fragile. The attack runs with the model in its current (train) mode,
as the code does. Gradients of the summed (not batch-mean) logits: per-sample attributions; cosine
distances do not depend on the scale.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainables.metrics.smooth import register_smooth
from trainables.models import unwrap
from trainables.regimes.base import Regime, RegimeParams, full_precision, register_regime

log = logging.getLogger(__name__)
Space = Literal["normalized", "pixel"]


class SwitchReLU(nn.Module):
    """ReLU, or Softplus_β(u) = log(1 + e^{βu})/β while ``soft`` is set (``softplus_mode``)."""

    def __init__(self, beta: float, inplace: bool = False):
        super().__init__()
        self.beta, self.inplace, self.soft = beta, inplace, False

    def forward(self, x):
        return F.softplus(x, beta=self.beta) if self.soft else F.relu(x, inplace=self.inplace)


@register_smooth(SwitchReLU)
def _smooth_switch(m: SwitchReLU, beta: float) -> nn.Module:
    """The IFIA evaluation's smooth copy (``metrics/smooth.py``): Softplus at the evaluation's β."""
    return nn.Softplus(beta)


def swap_relu(module: nn.Module, beta: float) -> int:
    """Replace every ``nn.ReLU`` in ``module`` by a ``SwitchReLU``; returns how many."""
    n = 0
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, SwitchReLU(beta, child.inplace))
            n += 1
        else:
            n += swap_relu(child, beta)
    return n


@contextmanager
def softplus_mode(model: nn.Module):
    acts = [m for m in model.modules() if isinstance(m, SwitchReLU)]
    for m in acts:
        m.soft = True
    try:
        yield
    finally:
        for m in acts:
            m.soft = False


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(a, b) over the last dim (broadcast): 1 − a·b / ((‖a‖+1e-8)(‖b‖+1e-8))."""
    return 1 - (a * b).sum(-1) / ((a.norm(dim=-1) + 1e-8) * (b.norm(dim=-1) + 1e-8))


def triplet_rows(img: torch.Tensor, g_pos: torch.Tensor, g_neg: torch.Tensor, mining: str = "own") -> torch.Tensor:
    """Per-row softplus(d_ap − d_an). ``img, g_pos, g_neg: [R, D]``; ``pair_hard`` needs R = 2B rows
    ordered [clean; adversarial] and mines over each image's two rows (authors' ``hard_example_mining``)."""
    if mining == "own":
        return F.softplus(cosine_distance(img, g_pos) - cosine_distance(img, g_neg))
    u, gp, gn = (t.reshape(2, -1, t.shape[-1]) for t in (img, g_pos, g_neg))
    d_ap = cosine_distance(u[:, None], gp[None]).amax(1)  # [2 rows of the pair, 2 gradient sources, B]
    d_an = cosine_distance(u[:, None], gn[None]).amin(1)
    return F.softplus(d_ap - d_an).reshape(-1)


def class_gradients(logits: torch.Tensor, u: torch.Tensor, y: torch.Tensor, create_graph: bool = True):
    """(g^y, g^{i*}) = gradients of the true-class logit and of the largest other logit w.r.t. ``u``."""
    true = logits.gather(1, y[:, None]).sum()
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1).sum()
    g_y = torch.autograd.grad(true, u, create_graph=create_graph, retain_graph=True)[0]
    g_n = torch.autograd.grad(other, u, create_graph=create_graph, retain_graph=True)[0]
    return g_y, g_n


def _flat(t: torch.Tensor, reduce: str) -> torch.Tensor:
    """``[B,C,H,W] -> [B, D]``; ``mean_abs``: per-pixel mean over channels of |t| (supplement S2.1)."""
    return (t.abs().mean(1) if reduce == "mean_abs" else t).flatten(1)


def _attributions(clf, x: torch.Tensor, y: torch.Tensor, space: str):
    """Softplus-network attributions of ``x`` (pixels) w.r.t. the input in ``space``, with the graph kept."""
    u = clf.normalize(x) if space == "normalized" else x
    with softplus_mode(clf):
        logits = clf.net(u) if space == "normalized" else clf(u)
        return class_gradients(logits, u, y)


class ARTParams(RegimeParams):
    eps: float = Field(8 / 255, gt=0, le=1, description="L-inf radius of x̃ in [0,1] pixels")
    step_size: float = Field(1.5 / 255, gt=0, description="attack step s (supplement 1.5/255; code 5/255)")
    steps: int = Field(3, ge=1, description="attack steps a")
    k_top: int | None = Field(1000, ge=1, description="attack restricted to the top-k input elements (code); null = all")
    beta: float = Field(50.0, gt=0, description="Softplus β for the gradient terms")
    lam: float = Field(0.5, ge=0, description="λ, weight of L_attr")
    mining: Literal["pair_hard", "own"] = "pair_hard"
    ce_on: Literal["adv", "clean", "both"] = "adv"
    grad_space: Space = "normalized"
    attack_grad_space: Space = "pixel"
    image_space: Space = "normalized"
    channel_reduce: Literal["none", "mean_abs"] = "none"


def attributional_attack(clf, x: torch.Tensor, y: torch.Tensor, p: ARTParams) -> torch.Tensor:
    """x̃ for ART (§4.2). ``x: [B,C,H,W]`` in [0,1] -> x̃ in [0,1] with ‖x̃ − x‖∞ ≤ ε (detached).

    Parameters are frozen during the attack (``attacks.gradient.attack_mode``, BN mode kept)."""
    from trainables.attacks.gradient import attack_mode

    image = clf.normalize if p.image_space == "normalized" else (lambda t: t)
    x = x.detach()
    with attack_mode(clf, x, "keep"):
        adv = (x + (2 * torch.rand_like(x) - 1) * p.eps).clamp(0, 1).requires_grad_()
        g = torch.autograd.grad(clf(adv).gather(1, y[:, None]).sum(), adv)[0]
        saliency = _flat(g, p.channel_reduce).abs()
        idx = saliency.topk(min(p.k_top or saliency.shape[1], saliency.shape[1]), dim=1).indices
        for _ in range(p.steps):
            adv = adv.detach().requires_grad_()
            g_y, g_n = _attributions(clf, adv, y, p.attack_grad_space)
            parts = [_flat(t, p.channel_reduce).gather(1, idx) for t in (image(adv), g_y, g_n)]
            direction = torch.autograd.grad(triplet_rows(*parts).mean(), adv)[0]
            with torch.no_grad():
                adv = torch.min(torch.max(adv + p.step_size * direction.sign(), x - p.eps), x + p.eps).clamp(0, 1)
    return adv.detach()


def attr_loss(clf, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, p: ARTParams) -> torch.Tensor:
    """L_attr on [x; x̃] (§4.3), differentiable w.r.t. the model's parameters (double backprop)."""
    both, yy = torch.cat([x, x_adv]).detach().requires_grad_(), y.repeat(2)
    g_y, g_n = _attributions(clf, both, yy, p.grad_space)
    img = (clf.normalize(both) if p.image_space == "normalized" else both).detach()
    rows = triplet_rows(*(_flat(t, p.channel_reduce) for t in (img, g_y, g_n)), mining=p.mining)
    return rows.mean()


@register_regime("art")
class ART(Regime):
    Params = ARTParams

    def build_model(self, model):
        n = swap_relu(model, self.params.beta)
        if n == 0:
            log.info("art: no nn.ReLU to swap; gradient terms use the backbone's own activations")
        return model

    def loss(self, model, x, y):
        clf, p = unwrap(model), self.params
        with torch.autocast(x.device.type, enabled=False):
            xf = full_precision(x)
            x_adv = attributional_attack(clf, xf, y, p)
            l_attr = attr_loss(clf, xf, x_adv, y, p)
        inputs = {"adv": x_adv, "clean": x, "both": torch.cat([x, x_adv])}[p.ce_on]
        targets = y.repeat(2) if p.ce_on == "both" else y
        logits = model(inputs.to(x.dtype))
        ce = F.cross_entropy(logits, targets)
        acc = (logits.argmax(1) == targets).float().mean().detach()
        return ce + p.lam * l_attr, {"train/acc": acc, "train/ce": ce.detach(), "train/attr_loss": l_attr.detach()}
