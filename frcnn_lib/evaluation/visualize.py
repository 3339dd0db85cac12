"""Drawing boxes and plotting training curves with matplotlib (used by reports and notebooks)."""
import matplotlib

matplotlib.use(matplotlib.get_backend() if matplotlib.get_backend() else "Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patches  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def draw_boxes(ax, image, boxes, labels=None, scores=None, class_names=None, color=None,
               linestyle="-", linewidth=1.5, fontsize=7):
    """Show ``image`` (``(H, W, 3)``) on ``ax`` with ``boxes (n, 4)`` xyxy drawn over it.

    Labels (1-based, named by ``class_names[label - 1]``) and scores are written at each
    box's top-left corner.  ``image=None`` draws on the axes as they are.
    """
    if image is not None:
        ax.imshow(np.asarray(image).astype(np.uint8) if np.asarray(image).dtype != np.uint8 else image)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        label = None if labels is None else int(labels[i])
        c = color or PALETTE[(label or 0) % len(PALETTE)]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c,
                                       linewidth=linewidth, linestyle=linestyle))
        text = []
        if label is not None:
            text.append(class_names[label - 1] if class_names and 0 < label <= len(class_names) else str(label))
        if scores is not None:
            text.append(f"{float(scores[i]):.2f}")
        if text:
            ax.text(x1, y1, " ".join(text), color="white", fontsize=fontsize, va="bottom",
                    bbox=dict(facecolor=c, alpha=0.7, pad=1, linewidth=0))
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_history(history, path=None,
                 names=("loss", "rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box", "val_mAP")):
    """Loss curves (and ``val_mAP``) from a ``keras.callbacks.History.history`` dict; a
    ``val_`` twin of a loss is drawn on the same axes."""
    names = [n for n in names if n in history]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), dpi=90, squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="val" if name.startswith("val_") else "train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="val")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path)
        plt.close(fig)
    return fig


def detection_grid(images, detections, ground_truths=None, class_names=None, path=None, columns=4,
                   min_score=0.5):
    """A grid of images with detections (solid) and ground truth (dashed, white)."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), dpi=90, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.ravel()[i]
        ax.axis("on")
        ax.imshow(image)
        if ground_truths is not None:
            draw_boxes(ax, None, ground_truths[i]["boxes"], color="white", linestyle="--", linewidth=1)
        det = detections[i]
        keep = np.asarray(det["scores"]) >= min_score
        draw_boxes(ax, None, np.asarray(det["boxes"])[keep], np.asarray(det["labels"])[keep],
                   np.asarray(det["scores"])[keep], class_names)
    fig.tight_layout()
    if path:
        fig.savefig(path)
        plt.close(fig)
    return fig


def save_detections(image, detections, path, class_names=None, max_size=None, min_score=0.0):
    """Write ``image`` with its detections to ``path`` at the image's own resolution.

    One image pixel is one picture pixel (no margins, no axes), unless ``max_size`` is given
    and the longer side exceeds it: then picture and boxes are scaled down by
    ``max_size / max(h, w)``.  Boxes are labelled ``name score`` (``class_names[label - 1]``,
    or ``detections["names"]`` when present), with line width and font size growing with
    the picture.

    Args:
      image: ``(h, w, 3)`` uint8.  detections: dict of ``boxes (n, 4)`` xyxy in the image's
        pixels, ``scores (n,)``, ``labels (n,)``, optional ``names (n,)`` (used when
        ``class_names`` is None).
      max_size: optional limit on the picture's longer side, in pixels.

    Returns ``(height, width)`` of the picture written.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    scale = 1.0 if not max_size or max(h, w) <= max_size else max_size / max(h, w)
    out_h, out_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if scale != 1.0:
        from PIL import Image
        image = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((out_w, out_h), Image.BILINEAR))
    keep = np.asarray(detections["scores"]) >= min_score
    labels = np.asarray(detections["labels"])[keep]
    names = class_names
    if names is None and "names" in detections:   # the model's names, by label
        names = _names_by_label(labels, np.asarray(detections["names"])[keep])
    dpi = 100
    fig = plt.figure(figsize=(out_w / dpi, out_h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    ax.imshow(image, interpolation="nearest")
    ax.set_xlim(-0.5, out_w - 0.5)
    ax.set_ylim(out_h - 0.5, -0.5)
    side = max(out_h, out_w)
    draw_boxes(ax, None, np.asarray(detections["boxes"], np.float32)[keep] * scale, labels,
               np.asarray(detections["scores"])[keep], names,
               linewidth=max(1.0, side / 400), fontsize=max(6.0, side / 80))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return out_h, out_w


def _names_by_label(labels, names):
    """``class_names``-style list (index ``label - 1``) from per-detection names."""
    if len(labels) == 0:
        return None
    table = [None] * int(labels.max())
    for label, name in zip(labels, names):
        table[int(label) - 1] = str(name)
    return [n if n is not None else str(i + 1) for i, n in enumerate(table)]
