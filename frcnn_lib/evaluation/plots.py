"""Matplotlib figures of the failure analysis in :mod:`frcnn_lib.evaluation.analysis`.

Each function draws on ``ax`` (a new figure's axes if None) and returns the axes. matplotlib is
imported when a function is called, so the metrics themselves never need it.
"""
import numpy as np

from frcnn_lib.evaluation.analysis import ERROR_TYPES


def _axes(ax, figsize):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _name(class_names, c):
    return class_names[c - 1] if class_names is not None else str(c)


def plot_pr_curves(curves, class_names=None, ax=None):
    """Precision against recall, one line per class, AP in the legend (``precision_recall_curves``)."""
    ax = _axes(ax, (4, 3.2))
    for c, curve in curves.items():
        if len(curve["recall"]) == 0 or curve["num_ground_truths"] == 0:
            continue
        envelope = np.maximum.accumulate(curve["precision"][::-1])[::-1]
        line, = ax.plot(curve["recall"], curve["precision"], linewidth=0.7, alpha=0.4)
        ax.step(curve["recall"], envelope, where="post", color=line.get_color(), linewidth=1.4,
                label=f"{_name(class_names, c)}: AP {curve['AP']:.3f}")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("precision-recall (faint: raw, bold: envelope)", fontsize=9)
    return ax


def plot_confusion_matrix(matrix, class_names=None, ax=None):
    """The ``(K + 1, K + 1)`` counts of ``confusion_matrix``, row-normalised colours, counts written."""
    ax = _axes(ax, (4, 3.6))
    matrix = np.asarray(matrix)
    k = matrix.shape[0] - 1
    labels = ["background"] + [_name(class_names, c) for c in range(1, k + 1)]
    rows = matrix.sum(1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (r, c), n in np.ndenumerate(matrix):
        if n:
            ax.text(c, r, str(n), ha="center", va="center", fontsize=7,
                    color="white" if shares[r, c] > 0.6 else "black")
    ax.set_xticks(range(k + 1), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k + 1), labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title("confusion (row 0: false alarms, column 0: misses)", fontsize=9)
    return ax


def plot_error_breakdown(counts, ax=None):
    """Bars of ``error_breakdown(...)["counts"]``: detections by type, then the missed objects."""
    ax = _axes(ax, (4.5, 2.6))
    names = [n for n in ERROR_TYPES if n != "ignored" or counts.get("ignored")] + ["missed"]
    colors = {"correct": "tab:green", "missed": "tab:gray"}
    bars = ax.bar(range(len(names)), [counts[n] for n in names],
                  color=[colors.get(n, "tab:red") for n in names])
    ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("count")
    ax.set_title("detections by type, and missed objects", fontsize=9)
    return ax


def plot_ap_by_size(result, ax=None):
    """mAP per size range (``ap_by_size``), with the number of ground truths under each bar."""
    ax = _axes(ax, (3.2, 2.6))
    names = list(result)
    values = [0.0 if np.isnan(result[n]["mAP"]) else result[n]["mAP"] for n in names]
    bars = ax.bar(range(len(names)), values, color="tab:blue")
    ax.bar_label(bars, labels=[("n/a" if np.isnan(result[n]["mAP"]) else f"{result[n]['mAP']:.2f}")
                               for n in names], fontsize=7)
    ax.set_xticks(range(len(names)), [f"{n}\n({result[n]['num_ground_truths']} objects)" for n in names], fontsize=7)
    ax.set(ylim=(0, 1.05), ylabel="mAP")
    ax.set_title("AP by object size (COCO areas)", fontsize=9)
    return ax


ERROR_COLORS = {"correct": "tab:green", "ignored": "tab:gray", "duplicate": "tab:orange",
                "localisation": "gold", "wrong_class": "tab:purple", "background": "tab:red"}


def plot_image_errors(image, detection, ground_truth, types, missed, class_names=None, ax=None):
    """One image: its detections coloured by error type (``ERROR_COLORS``), ground truth dashed
    white, missed objects dashed red.  ``types (n,)`` and ``missed (g,)`` are one image's entries
    of ``error_breakdown``; detections typed ``-1`` (below the score threshold) are not drawn."""
    from frcnn_lib.evaluation.visualize import draw_boxes
    ax = _axes(ax, (3, 3))
    missed = np.asarray(missed, bool)
    gt_boxes = np.asarray(ground_truth["boxes"]).reshape(-1, 4)
    draw_boxes(ax, image, gt_boxes[~missed], color="white", linestyle="--", linewidth=1)
    draw_boxes(ax, None, gt_boxes[missed], color="tab:red", linestyle="--", linewidth=1.5)
    boxes = np.asarray(detection["boxes"]).reshape(-1, 4)
    for t, name in enumerate(ERROR_TYPES):
        mine = np.asarray(types) == t
        if mine.any():
            draw_boxes(ax, None, boxes[mine], np.asarray(detection["labels"])[mine],
                       np.asarray(detection["scores"])[mine], class_names, color=ERROR_COLORS[name])
    return ax
