"""Adversarial explanations g_explain± (lipschitz-adversarial-explanations §III-A2, eq. 3; Fig. 1, 9, 13).

Follow the gradient that makes class ``target`` more likely (``positive=True``, g_explain+) or less likely
(g_explain−) up to a boundary RMSE ρ, then shrink the perturbation back toward ρ: the ``search`` skeleton of
``trainables.attacks.minimal`` with ``follow = RMSE(δ) < ρ``. Defaults are the authors' ``explain`` command:
ρ = 0.1, 35 ramped steps whose sizes sum to 5ρ (``eps_overshoot = 5``), no momentum, no clipping while
searching; the returned image is clipped to [0,1] for display (``clip_result``).
"""
from __future__ import annotations

import torch
from torch import nn

from trainables.attacks.gradient import BNMode
from trainables.attacks.minimal import RampRule, search
from trainables.attacks import norms


def explain(model: nn.Module, x: torch.Tensor, target: torch.Tensor, rho: float = 0.1, *, positive: bool = True,
            steps: int = 35, overshoot: float = 5.0, clip_result: bool = True, bn: BNMode = "keep") -> torch.Tensor:
    """``x: [B,C,H,W]`` in [0,1], ``target: [B]`` class ids -> the explanation image ``x + δ`` with RMSE(δ) ≈ ρ.

    Every image may have its own target (e.g. the same image repeated with the true and runner-up class).
    """
    def follow(logits, y, delta):
        return norms.rmse(delta) < rho

    res = search(model, x, target, follow, RampRule(rho * overshoot, steps), steps, track_best=False,
                 ascend=not positive, bn=bn)
    return res.x_adv.clamp_(0, 1) if clip_result else res.x_adv


def runner_up(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[B,V], [B] -> [B]``: the most likely class other than ``y`` (the code's "second" class)."""
    return logits.scatter(1, y[:, None], float("-inf")).argmax(1)


@torch.no_grad()
def explanation_panels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float = 0.1,
                       steps: int = 35) -> dict[str, torch.Tensor]:
    """g_explain+ for the true class and the runner-up class of each image (the paper's Fig. 1 / 13 layout).

    Returns ``x: [B,C,H,W]``, ``targets: [2,B]`` (row 0 true, row 1 runner-up), ``result`` and ``delta``
    ``[2,B,C,H,W]``, ``p_before`` / ``p_after``: ``[2,B]`` softmax of the target class before / after.
    """
    b = len(x)
    p0 = model(x).softmax(1)
    targets = torch.stack([y, runner_up(p0, y)])
    xx = x.repeat(2, *([1] * (x.dim() - 1)))
    result = explain(model, xx, targets.flatten(), rho, steps=steps)
    p1 = model(result).softmax(1).gather(1, targets.flatten()[:, None])[:, 0]
    shape = (2, b, *x.shape[1:])
    return {"x": x, "targets": targets, "result": result.view(shape), "delta": (result - xx).view(shape),
            "p_before": p0.gather(1, targets.T).T, "p_after": p1.view(2, b)}


def explanation_figure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float = 0.1, steps: int = 35,
                       class_names: list[str] | None = None):
    """A matplotlib ``Figure``: per image, the original and, for the true and the runner-up class, the
    perturbation (0.5 + δ/(2·max|δ|)) and the result. matplotlib is imported lazily (no pyplot state)."""
    from matplotlib.figure import Figure

    p = {k: v.detach().float().cpu() for k, v in explanation_panels(model, x, y, rho, steps).items()}
    name = (lambda c: class_names[c]) if class_names else (lambda c: f"class {c}")
    b = len(p["x"])
    fig = Figure(figsize=(10, 2.2 * b))
    axes = fig.subplots(b, 5, squeeze=False)
    for i in range(b):
        cells = [(p["x"][i], f"input ({name(int(p['targets'][0, i]))})")]
        for r, what in ((0, "true"), (1, "runner-up")):
            c, d = int(p["targets"][r, i]), p["delta"][r, i]
            cells += [(0.5 + d / (2 * d.abs().max().clamp(min=1e-12)), f"{what} {name(c)}: δ (RMSE {rho:g})"),
                      (p["result"][r, i], f"s={p['p_before'][r, i]:.2f} → {p['p_after'][r, i]:.2f}")]
        for ax, (img, title) in zip(axes[i], cells):
            img = img.clamp(0, 1).permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"adversarial explanations g_explain+ (ρ = {rho:g} RMSE)")
    return fig
