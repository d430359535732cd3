"""``arx bench regimes``: one training step of every registered regime (default params) vs ``standard``.

Same backbone, batch and device for all (resnet18, 64 px, batch 32; ``quick``: 32 px, batch 8); the step is
the loop's (zero_grad, regime loss, backward, optimizer step; AMP + channels_last on CUDA); each regime's
step and the standard step are timed alternately and the medians compared (robust to load drift). Targets: the
Top-GAP paper's "no slower training" (topgap <= 1.15x) and lipschitz with K = 1 (one extra backward,
<= 3x); other regimes are reported only. A regime that fails to build or step is a row with its error.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from analysis.bench import register_bench
from analysis.bench.timing import median_seconds

TARGETS = {"topgap": 1.15, "lipschitz": 3.0}


def _trial(regime: str, backbone: str, size: int):
    from trainables.config import TrialConfig

    return TrialConfig.parse({"dataset": {"name": "shapes", "image_size": size},
                              "model": {"backbone": backbone, "num_classes": 10},
                              "regime": {"name": regime}})


def make_step(regime_name: str, backbone: str, size: int, batch: int, device: torch.device):
    """A closure running one training step of ``regime_name`` on a fixed random batch."""
    from trainables.models import build_classifier
    from trainables.regimes import build_regime

    torch.manual_seed(0)
    cfg = _trial(regime_name, backbone, size)
    regime = build_regime(cfg)
    model = regime.build_model(build_classifier(backbone, 10)).to(device).train()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if cuda else x
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16) if cuda else nullcontext():
            loss, _ = regime.loss(model, x, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def paired_seconds(peer, ours, repeats: int, warmup: int) -> tuple[float, float]:
    """Median seconds of ``peer`` and ``ours`` timed alternately (load drift hits both alike)."""
    t_peer, t_ours = [], []
    for i in range(warmup + repeats):
        p, o = median_seconds(peer, 1, 0), median_seconds(ours, 1, 0)
        if i >= warmup:
            t_peer.append(p)
            t_ours.append(o)
    return sorted(t_peer)[len(t_peer) // 2], sorted(t_ours)[len(t_ours) // 2]


@register_bench("regimes")
def run(quick: bool = False, regimes: list[str] | None = None) -> list[dict]:
    from trainables.regimes import REGIMES

    backbone, size, batch = ("resnet18", 32, 8) if quick else ("resnet18", 64, 32)
    repeats, warmup = (3, 1) if quick else (11, 2)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peer_step = make_step("standard", backbone, size, batch, device)
    rows = []
    for name in regimes or [n for n in REGIMES.names() if n != "standard"]:
        row = {"bench": f"regimes/{name}", "backbone": backbone, "image_size": size, "batch": batch,
               "device": device.type}
        try:
            peer, ours = paired_seconds(peer_step, make_step(name, backbone, size, batch, device), repeats, warmup)
        except Exception as e:  # reported in the row: one broken regime must not hide the others' numbers
            rows.append(row | {"ours_s": None, "peer_s": None, "ratio": None, "target": "",
                               "error": f"{type(e).__name__}: {e}"})
            continue
        target = TARGETS.get(name)
        rows.append(row | {"ours_s": ours, "peer_s": peer, "ratio": ours / peer,
                           "target": f"<= {target:g}x" if target else "report",
                           "met": (ours / peer <= target) if target else None})
    return rows
