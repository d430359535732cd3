"""The CAM gallery figure of the localisation family (matplotlib, imported lazily)."""
from __future__ import annotations

import torch

from trainables.metrics import localization as loc_m


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
