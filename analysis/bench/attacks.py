"""``arx bench attacks``: our PGD-10 vs torchattacks' PGD-10 on the same model and batch, in one run.

Setup (issue target: ratio ≤ 0.8): timm resnet18 (random weights, eval mode) wrapped in ``Classifier``,
64×64 images, batch 64, L-inf ε = 8/255, α = 2/255, 10 steps, no random start, labels = the model's clean
predictions; ``quick=True`` uses 32×32 and batch 16. The attacks alternate within every repeat (fair under a
noisy machine: on the 2-core VM the same call varies by ±15 % between runs); medians of 7 repeats are reported.

Rows, one per attack victim (``evaluation.robust.victim``), each our ``pgd`` vs ``torchattacks.PGD`` on the model:
- ``attacks/pgd10``: the default victim ``folded`` — a frozen BN-folded copy (channels_last on GPU, the model's
  layout on CPU), built inside the timed call, as the evaluation runs it;
- ``attacks/pgd10_cpu_plan``: the opt-in per-layer CPU plan (``trainables.models.cpu_plan``);
- ``attacks/pgd10_same_model``: victim ``model``, the unmodified model (bit-identical images to torchattacks).
Adversarial images of the copies may differ from the model's by float rounding; robust accuracies are reported.

- ``attacks/autoattack``: arx's ``autoattack`` (standard: APGD-CE, APGD-T, FAB-T, Square; default victim) vs
  ``torchattacks.AutoAttack`` on the same model and batch (target: ratio ≤ 1.0), both at the eval ε of 64-px
  images (1/255, so that images survive the first stages and every stage is timed), 10 APGD/FAB steps
  (torchattacks' setting), Square at 1000 queries in both, the same seed; 3 repeats. ``cost_vs_pgd10``:
  arx's AutoAttack time ÷ arx's PGD-10 time (default victim) on the same batch; ``stages``: the robust count
  after each stage.
"""
from __future__ import annotations

import statistics
import time

import torch

from analysis.bench import register_bench


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(fns: dict, device: torch.device, repeats: int) -> tuple[dict[str, float], dict]:
    """Median seconds of each function, calling them in turn in every repeat after one warm-up round, and each
    function's last return value (the attacks are deterministic: no extra run is needed for their results)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    last = {}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            last[k] = fn()
            _sync(device)
            if r:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, last


@register_bench("attacks")
def run(quick: bool = False) -> list[dict]:
    import torchattacks

    from trainables.attacks import pgd
    from trainables.models.inference import attack_victim
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
    victims = {"folded": "attacks/pgd10", "cpu_plan": "attacks/pgd10_cpu_plan", "model": "attacks/pgd10_same_model"}
    fns = {v: (lambda v=v: pgd(attack_victim(model, v), x, y, eps, steps=steps, alpha=alpha)) for v in victims}
    fns["peer"] = lambda: peer(x, y)
    t, advs = _interleaved(fns, device, repeats)  # outside no_grad: torchattacks needs autograd on
    with torch.no_grad():
        acc = {k: float((model(a).argmax(1) == y).float().mean()) for k, a in advs.items()}
    common = {"peer_s": t["peer"], "target": "ratio <= 0.8", "device": str(device), "threads": torch.get_num_threads(),
              "image_size": size, "batch": batch, "steps": steps, "robust_acc_peer": acc["peer"]}
    rows = [{"bench": row, "ours_s": t[v], "ratio": t[v] / t["peer"], "robust_acc_ours": acc[v], "victim": v, **common}
            for v, row in victims.items()]
    if quick:   # 4 images, 5 steps, 100 Square queries: at ε 1/255 the random net keeps most images robust, so
        # every stage (FAB-T and Square included) runs on all of them; the full size took > 30 min on a loaded VM
        return rows + [_autoattack_row(model, x[:4], y[:4], device, t["folded"], 1, steps=5, queries=100)]
    return rows + [_autoattack_row(model, x, y, device, t["folded"], 3)]


def _autoattack_row(model, x, y, device, pgd10_s: float, repeats: int, steps: int = 10, queries: int = 1000) -> dict:
    import torchattacks

    from trainables.attacks.autoattack import autoattack
    from trainables.models.inference import attack_victim

    eps, stages = 1 / 255, []
    peer = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
    peer._autoattack.attacks[-1].n_queries = queries  # the same Square budget (5000 in its constructor)
    for stage in peer._autoattack.attacks[:3]:  # the same APGD / APGD-T / FAB-T steps (10 in its constructor)
        stage.steps = steps

    def run_ours():
        stages.clear()  # the stages of the last call (seeded: every call runs the same ones)
        return autoattack(attack_victim(model, "folded"), x, y, eps, steps=steps, queries=queries, seed=0,
                          on_stage=lambda n, r: stages.append(f"{n}:{r}"))

    t, advs = _interleaved({"ours": run_ours, "peer": lambda: peer(x, y)}, device, repeats)  # autograd on (torchattacks)
    ours, theirs = advs["ours"], advs["peer"]
    with torch.no_grad():
        acc = {k: float((model(a).argmax(1) == y).float().mean()) for k, a in (("ours", ours), ("peer", theirs))}
    return {"bench": "attacks/autoattack", "ours_s": t["ours"], "peer_s": t["peer"], "ratio": t["ours"] / t["peer"],
            "cost_vs_pgd10": t["ours"] / pgd10_s, "target": "ratio <= 1.0", "device": str(device),
            "threads": torch.get_num_threads(), "batch": len(x), "eps": eps, "steps": steps, "queries": queries,
            "robust_acc_ours": acc["ours"], "robust_acc_peer": acc["peer"], "stages": " ".join(stages)}
