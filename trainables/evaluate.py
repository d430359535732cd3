"""The evaluation suite: model + test data -> flat dict of metrics (keys from ``metrics/keys.py``).

Each evaluation group is a registered ``EvalGroup``: ``per_image`` turns one batch into per-image values
(``{key: Tensor[B]}``; NaN = this image is not admitted by the metric's definition), ``reduce`` turns the
values of all images into final metrics (default: mean over non-NaN values). Under DDP every rank runs
its shard of the batches and the per-image values are gathered, so nothing is computed twice; keys that
start with ``_`` are intermediate values (e.g. per-image attack distances) that ``reduce`` consumes.

Groups: ``accuracy`` (whole test split), ``robustness`` and ``explain`` (a fixed, seeded subset of
``evaluation.num_images`` test images).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from trainables.registry import Registry


@dataclass
class EvalContext:
    model: torch.nn.Module          # the Classifier (unwrapped, eval mode)
    cfg: Any                        # TrialConfig
    regime: Any                     # Regime
    device: torch.device
    num_classes: int
    tags: dict[str, str] = field(default_factory=dict)   # reasons for absent metrics, CAM kind, ...
    artifacts: dict[str, Any] = field(default_factory=dict)  # figures/arrays for MLflow (rank 0)


class EvalGroup:
    name: ClassVar[str]
    uses: ClassVar[str] = "subset"  # "full" test split or the seeded "subset"

    def per_image(self, ctx: EvalContext, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def reduce(self, ctx: EvalContext, values: dict[str, torch.Tensor]) -> dict[str, float]:
        return nanmean_public(values)

    def artifacts(self, ctx: EvalContext, batch: dict) -> None:
        """Optional: add figures to ``ctx.artifacts`` from the first subset batch (rank 0 only)."""


EVAL_GROUPS: Registry[type[EvalGroup]] = Registry("evaluation group")
register_group = EVAL_GROUPS.register


def nanmean_public(values: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if k.startswith("_"):
            continue
        v = v[~torch.isnan(v)]
        if len(v):
            out[k] = float(v.mean())
    return out


# ---------------------------------------------------------------------------------------------------
# accuracy group
# ---------------------------------------------------------------------------------------------------
@register_group("accuracy")
class AccuracyGroup(EvalGroup):
    name = "accuracy"
    uses = "full"

    @torch.no_grad()
    def per_image(self, ctx, batch):
        logits = ctx.model(batch["image"])
        y = batch["label"]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        return {
            "acc/top1": (top[:, 0] == y).float(),
            "acc/top5": (top == y[:, None]).any(1).float(),
        }


# ---------------------------------------------------------------------------------------------------
# robustness group (trainables.attacks + trainables.metrics.robustness)
# ---------------------------------------------------------------------------------------------------
# (filled by the robustness work: trainables.attacks + trainables.metrics.robustness)
@register_group("robustness")
class RobustnessGroup(EvalGroup):
    """``robust/<attack>`` (vs labels), ``robust/<attack>_agree`` (prediction unchanged; misclassified images are
    attacked again with their clean prediction as the label, Top-GAP's protocol), ``robust/<attack>_top5``;
    ARA / BTR-ARA (lipschitz paper §III-A) from the per-image minimal RMSEs ``_ara`` / ``_btr``: images are
    taken in order until ``ara_images`` correctly classified ones (split over ranks), misclassified ones
    count as 0. Attacks run on the eval-mode model (running BN statistics), autocast off; with ``fused`` (default)
    they differentiate ``inference_copy(model)`` (BN folded, per-layer CPU plan or channels_last: the same
    function, faster) and the accuracies are read from the model itself."""

    def __init__(self):
        self.ara_left: int | None = None
        self.gen: torch.Generator | None = None
        self.victim: torch.nn.Module | None = None  # what the attacks differentiate (``fused``)

    def _victim(self, ctx) -> torch.nn.Module:
        from trainables.attacks.fused import inference_copy

        if self.victim is None:
            fused = ctx.cfg.evaluation.robust.fused
            self.victim = inference_copy(ctx.model) if fused else ctx.model
        return self.victim

    def per_image(self, ctx, batch):
        from trainables.metrics.robustness import agree, correct, topk_correct

        x, y, rc = batch["image"], batch["label"], ctx.cfg.evaluation.robust
        if self.gen is None:
            self.gen = torch.Generator(x.device).manual_seed(ctx.cfg.evaluation.seed + _rank()[0])
        with torch.no_grad():
            clean = ctx.model(x)
        pred, out = clean.argmax(1), {}
        wrong = (pred != y).nonzero()[:, 0]
        for name in rc.attacks:
            attack = self._attack(ctx, name)
            with torch.no_grad():
                adv = ctx.model(attack(x, y))
                same = adv.clone()
                if len(wrong):
                    same[wrong] = ctx.model(attack(x[wrong], pred[wrong]))
            out[f"robust/{name}"], out[f"robust/{name}_agree"] = correct(adv, y), agree(same, clean)
            if name != "pgd_l2":
                out[f"robust/{name}_top5"] = topk_correct(adv, y, 5)
        if rc.ara_images:
            out |= self._ara(ctx, x, y, pred == y)
        return out

    def _attack(self, ctx, name: str):
        from trainables.attacks import fgsm, pgd

        rc, model = ctx.cfg.evaluation.robust, self._victim(ctx)
        eps = rc.eps_l2 if name == "pgd_l2" else rc.linf_eps(ctx.cfg.dataset.image_size)
        if name == "fgsm":
            return lambda x, y: fgsm(model, x, y, eps)
        return lambda x, y: pgd(model, x, y, eps, steps=rc.pgd_steps, alpha=rc.pgd_step_ratio * eps / rc.pgd_steps,
                                norm="l2" if name == "pgd_l2" else "linf", random_start=rc.random_start,
                                generator=self.gen)

    def _ara(self, ctx, x, y, ok) -> dict[str, torch.Tensor]:
        """Per-image minimal RMSE for goals g_adv / g_btr (NaN = not in the ARA sample)."""
        from trainables.attacks import minimal_distance

        rc = ctx.cfg.evaluation.robust
        if self.ara_left is None:
            rank, world = _rank()
            self.ara_left = rc.ara_images // world + int(rank < rc.ara_images % world)
        take = (ok.long().cumsum(0) - ok.long()) < self.ara_left  # stop after the last needed correct image
        self.ara_left -= int(ok[take].sum())
        run = (take & (ok | (rc.ara_misclassified == "attack"))).nonzero()[:, 0]
        out = {}
        for goal, key in (("adv", "_ara"), ("btr", "_btr")):
            d = torch.where(take, 0.0, float("nan")).to(x.device)
            miss = torch.full_like(d, float("nan"))
            if len(run):
                res = minimal_distance(self._victim(ctx), x[run], y[run], goal, steps=rc.ara_steps, rule=rc.ara_rule,
                                       total=rc.ara_total, momentum=rc.ara_momentum)
                never = torch.isinf(res.rmse)
                d[run] = torch.where(never, res.last_rmse, res.rmse)  # unreached: a lower bound
                miss[run] = never.float()
            out[key], out[f"{key}_unreached"] = d, miss
        return out

    def reduce(self, ctx, values):
        from trainables.metrics.robustness import ara

        rc = ctx.cfg.evaluation.robust
        out = nanmean_public(values)
        naive = rc.ara_naive if rc.ara_naive is not None else 1.0 / ctx.num_classes
        for key, metric in (("_ara", "robust/ara"), ("_btr", "robust/btr_ara")):
            d = values.get(key, torch.empty(0))
            d = d[~torch.isnan(d)]
            if len(d):
                out[metric] = ara(d, naive)
                miss = values[f"{key}_unreached"]
                ctx.tags[f"{metric}_images"] = str(len(d))
                ctx.tags[f"{metric}_unreached"] = str(int(miss[~torch.isnan(miss)].sum()))
        return out

    def artifacts(self, ctx, batch):
        """g_explain+ for the true and the runner-up class (original, perturbation, result) -> a Figure."""
        from trainables.attacks.explanation import explanation_figure

        rc = ctx.cfg.evaluation.robust
        n = min(rc.explain_images, len(batch["label"]))
        if n:
            ctx.artifacts["adversarial_explanations"] = explanation_figure(
                ctx.model, batch["image"][:n], batch["label"][:n], rc.explain_rho, rc.explain_steps)


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------------------------------------------
# explain group (trainables.explain + trainables.metrics.localization / attribution)
# ---------------------------------------------------------------------------------------------------
# (trainables.explain + trainables.metrics.localization / attribution)
import math  # noqa: E402

from trainables.explain import binarize, cam_boxes, cam_kind_for, compute_cam  # noqa: E402
from trainables.explain.gradients import ig_map, vg_map  # noqa: E402
from trainables.metrics import attribution as attr_m  # noqa: E402
from trainables.metrics import road as road_m  # noqa: E402
from trainables.metrics import localization as loc_m  # noqa: E402

_LOCALIZATION_KEYS = {"box_iou": "boxes", "box_iou_random": "boxes", "mask_iou": "masks", "pointing": "boxes"}


@register_group("explain")
class ExplainGroup(EvalGroup):
    """``explain/*`` (DESIGN.md), each on the images its definition admits (NaN = not admitted):

    - ``box_iou`` (images with a GT box; CAM -> threshold -> contour box, a CAM without any box counts
      0) and ``box_iou_random`` (the chance level on the same images: uniform random boxes), ``pointing`` (GT box), ``mask_iou`` (GT mask), ``cam_l1`` (every image); all for the CAM of
      the predicted class (``ctx.tags["cam_kind"]``: native for regimes whose head is the CAM, else Grad-CAM);
    - on correctly classified images only: ``gini_vg``, ``gini_ig``, ``road_aopc``; ``ssim_vg`` (σ
      whose noisy prediction still equals the label), ``ros_vg`` (no perturbation changes the
      prediction), ``attr_topk`` / ``attr_kendall`` (the IFIA iterate stayed correctly classified).

    A key with no admitted image is absent and ``ctx.tags["absent.<key>"]`` gives the reason.
    """

    name = "explain"

    def __init__(self):
        self._generator: torch.Generator | None = None
        self._smooth = None
        self._attacked = 0

    def per_image(self, ctx, batch):
        ecfg = ctx.cfg.evaluation.explain
        want = set(ecfg.metrics)
        x, y = batch["image"], batch["label"]
        kind = cam_kind_for(ctx.regime, ecfg.cam)
        ctx.tags["cam_kind"] = kind
        out = compute_cam(ctx.model, x, kind)
        values = self._localization(ecfg, want, out.cam, batch, out.targets == y, self._rng(ctx, x.device))
        correct = (out.targets == y).nonzero()[:, 0]
        for key, v in self._attribution(ctx, ecfg, want, x[correct], y[correct]).items():
            values[key] = torch.full((len(x),), float("nan"), device=x.device).index_put((correct,), v.float())
        return values

    def _localization(self, ecfg, want, cam, batch, correct, generator):
        values = {}
        box = batch["box"]
        nan = torch.full_like(cam[:, 0, 0], float("nan"))
        if "box_iou" in want:
            iou = loc_m.box_iou(cam_boxes(cam, ecfg.cam_threshold, ecfg.box_rule), box).nan_to_num(0.0)
            ok = ~torch.isnan(box).any(1) & (correct if ecfg.box_correct_only else True)
            values["explain/box_iou"] = torch.where(ok, iou, nan)
            # chance level on the same images: uniform random boxes (the baseline box_iou must beat)
            rand = loc_m.random_box_iou(box.nan_to_num(0.0), cam.shape[-2], cam.shape[-1], generator=generator)
            values["explain/box_iou_random"] = torch.where(ok, rand, nan)
        if "mask_iou" in want:
            iou = loc_m.mask_iou(binarize(cam, ecfg.cam_threshold), batch["mask"])
            values["explain/mask_iou"] = torch.where(batch["has_mask"].bool(), iou, nan)
        if "pointing" in want:
            values["explain/pointing"] = loc_m.pointing_game(cam, box, ecfg.pointing_tolerance)
        if "cam_l1" in want:
            values["explain/cam_l1"] = loc_m.cam_l1(cam)
        return values

    def _attribution(self, ctx, ecfg, want, x, y) -> dict[str, torch.Tensor]:
        model, g, values = ctx.model, self._rng(ctx, x.device), {}
        if not len(x):
            return {}
        vg = vg_map(model, x, y) if want & {"gini_vg", "road_aopc"} else None
        ig = ig_map(model, x, y, ecfg.ig_steps, ecfg.ig_rule) if "gini_ig" in want or (
            "road_aopc" in want and ecfg.road_attribution == "ig") else None
        if "gini_vg" in want:
            values["explain/gini_vg"] = attr_m.gini(vg)
        if "gini_ig" in want:
            values["explain/gini_ig"] = attr_m.gini(ig)
        if "ssim_vg" in want:
            values["explain/ssim_vg"] = attr_m.ssim_stability(
                model, x, y, vg_map, ecfg.noise_sigmas, ecfg.ssim_win_size, ecfg.ssim_data_range,
                ecfg.ssim_normalise, g).nanmean(1)
        if "ros_vg" in want:
            lo, hi = ecfg.ros_noise
            values["explain/ros_vg"] = attr_m.relative_output_stability(model, x, y, vg_map, ecfg.ros_samples, lo, hi,
                                                                        generator=g)
        if "road_aopc" in want:
            curve = road_m.road_curve(model, x, y, vg if ecfg.road_attribution == "vg" else ig,
                                      ecfg.road_fractions, ecfg.road_noise, g)
            base = torch.ones_like(curve[:, 0]) if ecfg.road_baseline == "unperturbed" else curve[:, 0]
            values["explain/road_aopc"] = road_m.aopc(curve, base)
        if want & {"attr_topk", "attr_kendall"}:
            values |= self._ifia(ctx, ecfg, x, y, g)
        return {k: v for k, v in values.items() if k.split("/")[1] in want}

    def _ifia(self, ctx, ecfg, x, y, g) -> dict[str, torch.Tensor]:
        """IFIA on the first ``attr_images`` admitted images (split over DDP ranks); NaN for the rest."""
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        n = max(0, min(len(x), -(-ecfg.attr_images // world) - self._attacked))
        self._attacked += n
        topk = torch.full((len(x),), float("nan"), device=x.device)
        tau = topk.clone()
        if n:
            topk[:n], tau[:n] = attr_m.attribution_robustness(
                ctx.model, x[:n], y[:n], min(ecfg.attr_topk, x[0, 0].numel()), ecfg.ifia_eps, ecfg.ifia_step,
                ecfg.ifia_steps, ecfg.ifia_ig_steps, ecfg.ig_steps, ecfg.ifia_beta, self._smooth_model(ctx), g)
        return {"explain/attr_topk": topk, "explain/attr_kendall": tau}

    def _rng(self, ctx, device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(ctx.cfg.evaluation.seed)
        return self._generator

    def _smooth_model(self, ctx):
        if self._smooth is None:
            self._smooth = attr_m.softplus_copy(ctx.model, ctx.cfg.evaluation.explain.ifia_beta)
        return self._smooth

    def reduce(self, ctx, values):
        out = nanmean_public(values)
        ros = out.get("explain/ros_vg")
        if ros is not None and ctx.cfg.evaluation.explain.ros_log10:
            out["explain/ros_vg"] = math.log10(ros) if ros > 0 else float("-inf")
        for key in values:
            if not key.startswith("_") and key not in out:
                what = _LOCALIZATION_KEYS.get(key.split("/")[1])
                ctx.tags[f"absent.{key}"] = (f"no ground-truth {what} in the evaluated images" if what else
                                             "no evaluated image is admitted by the metric's definition")
        return out

    def artifacts(self, ctx, batch):
        n = min(ctx.cfg.evaluation.explain.gallery_images, len(batch["image"]))
        if n == 0:
            return
        ecfg = ctx.cfg.evaluation.explain
        x = batch["image"][:n]
        out = compute_cam(ctx.model, x, cam_kind_for(ctx.regime, ecfg.cam))
        boxes = cam_boxes(out.cam, ecfg.cam_threshold, ecfg.box_rule)
        ctx.artifacts["cam_gallery"] = cam_gallery(x, out.cam, boxes, batch["box"][:n], batch["label"][:n],
                                                   out.targets)


def cam_gallery(images, cams, pred_boxes, gt_boxes, labels, preds):
    """A matplotlib Figure, one row per image: the image with its GT box (green), and the CAM overlay with
    the predicted box (red) and the GT box (green), titled with label, prediction and box IoU."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    images, cams = images.detach().float().cpu(), cams.detach().float().cpu()
    pred_boxes, gt_boxes = pred_boxes.cpu(), gt_boxes.cpu()
    ious = loc_m.box_iou(pred_boxes, gt_boxes)
    fig = Figure(figsize=(4.4, 2.2 * len(images)))
    axes = fig.subplots(len(images), 2, squeeze=False)
    for i, (left, right) in enumerate(axes):
        img = images[i].permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
        cmap = "gray" if img.ndim == 2 else None
        left.imshow(img, cmap=cmap)
        right.imshow(img, cmap=cmap)
        right.imshow(cams[i].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        for ax, boxes in ((left, [(gt_boxes[i], "lime")]), (right, [(pred_boxes[i], "red"), (gt_boxes[i], "lime")])):
            for b, colour in boxes:
                if not torch.isnan(b).any():
                    x1, y1, x2, y2 = b.tolist()
                    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.5))
            ax.set_axis_off()
        left.set_title(f"label {int(labels[i])}", fontsize=8)
        iou = "" if torch.isnan(ious[i]) else f", IoU {float(ious[i]):.2f}"
        right.set_title(f"pred {int(preds[i])}{iou}", fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------------------
def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _shard(n: int, rank: int, world: int) -> list[int]:
    return list(range(rank, n, world))


def subset_indices(n_test: int, num_images: int, seed: int) -> list[int]:
    """The fixed, seeded subset of test images the robustness / explain metrics use."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_test, generator=g)[: min(num_images, n_test)].sort().values.tolist()


def _gather(values: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    local = {k: torch.cat(v).float().cpu() if v else torch.empty(0) for k, v in values.items()}
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered: list[dict] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, local)
    keys = sorted({k for part in gathered for k in part})
    return {k: torch.cat([part[k] for part in gathered if k in part]) for k in keys}


def run_group(group: EvalGroup, ctx: EvalContext, dataset, batch_size: int, rank: int = 0,
              world: int = 1, progress=None) -> dict[str, float]:
    """Run one group over ``dataset`` (this rank's shard), gather per-image values, reduce."""
    idx = _shard(len(dataset), rank, world)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, idx), batch_size=batch_size)
    values: dict[str, list[torch.Tensor]] = {}
    for i, batch in enumerate(loader):
        batch = _to_device(batch, ctx.device)
        if i == 0 and rank == 0:
            group.artifacts(ctx, batch)
        for k, v in group.per_image(ctx, batch).items():
            values.setdefault(k, []).append(v.detach().reshape(-1).float().cpu())
        if progress:
            progress(group.name, i + 1, len(loader))
    return group.reduce(ctx, _gather(values))


def evaluate(ctx: EvalContext, test_set, rank: int = 0, world: int = 1, progress=None) -> dict[str, float]:
    """Run the configured groups; returns the flat metric dict (same on every rank)."""
    ecfg = ctx.cfg.evaluation
    ctx.model.eval()
    subset = torch.utils.data.Subset(test_set, subset_indices(len(test_set), ecfg.num_images, ecfg.seed))
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    for name in ecfg.groups:
        group = EVAL_GROUPS.get(name)()
        data = test_set if group.uses == "full" else subset
        metrics.update(run_group(group, ctx, data, ecfg.batch_size, rank, world, progress))
    metrics["cost/eval_seconds"] = time.perf_counter() - t0
    return metrics
