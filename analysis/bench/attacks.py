"""``arx bench attacks``: our PGD-10 vs torchattacks' PGD-10 on the same model and batch, in one run.

Setup (issue target: ratio ≤ 0.8): timm resnet18 (random weights, eval mode) wrapped in ``Classifier``,
64×64 images, batch 64, L-inf ε = 8/255, α = 2/255, 10 steps, no random start, labels = the model's clean
predictions; ``quick=True`` uses 32×32 and batch 16. The attacks alternate within every repeat (fair under a
noisy machine: on the 2-core VM the same call varies by ±15 % between runs); medians of 7 repeats are reported.

Rows:
- ``attacks/pgd10``: ours as the evaluation runs it — ``pgd`` on ``inference_copy(model)`` (BN folded, frozen,
  in the device's attack layout: the per-layer CPU plan of ``trainables.attacks.fused`` on CPU, channels_last
  on GPU; the copy is built inside the timed call) vs ``torchattacks.PGD`` on the model. Adversarial images
  may differ by float rounding; both robust accuracies are reported.
- ``attacks/pgd10_same_model``: ours on the unmodified model (bit-identical images to torchattacks).
"""
from __future__ import annotations

import statistics
import time

import torch

from analysis.bench import register_bench


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(fns: dict, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of each function, calling them in turn in every repeat after one warm-up round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@register_bench("attacks")
def run(quick: bool = False) -> list[dict]:
    import torchattacks

    from trainables.attacks import pgd
    from trainables.attacks.fused import auto_layout, inference_copy
    from trainables.models import build_classifier

    size, batch, repeats = (32, 16, 2) if quick else (64, 64, 7)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_classifier("resnet18", 10).eval().to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    peer = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    fns = {
        "ours": lambda: pgd(inference_copy(model), x, y, eps, steps=steps, alpha=alpha),
        "ours_same_model": lambda: pgd(model, x, y, eps, steps=steps, alpha=alpha),
        "peer": lambda: peer(x, y),
    }
    t = _interleaved(fns, device, repeats)
    advs = {k: fn() for k, fn in fns.items()}  # outside no_grad: torchattacks needs autograd on
    with torch.no_grad():
        acc = {k: float((model(a).argmax(1) == y).float().mean()) for k, a in advs.items()}
    layout = auto_layout(model)
    common = {"peer_s": t["peer"], "target": "ratio <= 0.8", "device": str(device), "threads": torch.get_num_threads(),
              "image_size": size, "batch": batch, "steps": steps, "robust_acc_peer": acc["peer"]}
    return [
        {"bench": "attacks/pgd10", "ours_s": t["ours"], "ratio": t["ours"] / t["peer"],
         "robust_acc_ours": acc["ours"], "layout": layout, **common},
        {"bench": "attacks/pgd10_same_model", "ours_s": t["ours_same_model"], "ratio": t["ours_same_model"] / t["peer"],
         "robust_acc_ours": acc["ours_same_model"], "layout": "model", **common},
    ]
