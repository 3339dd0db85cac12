"""Anchors and image size from the data: how well do the anchors cover the ground truth?

Shape glossary: ``G`` ground-truth boxes (all images), ``A = S * R`` anchors per location
(``S`` scales, ``R`` ratios), ``N`` anchors of one image, ``F`` image-size factors tried.

Every box is first resized as the training pipeline resizes its image (shorter side
``min_side``, longer at most ``max_side``; ``frcnn_lib.datasets.pipeline.resize_image``),
VOC ``difficult`` boxes left out as in training.  Then, per box:

- size ``sqrt(w * h)`` and aspect ``h / w`` (the anchors' own parameters: an anchor of
  scale ``s`` and ratio ``r`` has ``sqrt(w h) = s`` and ``h / w = r``);
- best-anchor IoU: the largest IoU with any anchor of the image's full grid
  (``generate_anchors`` over ``ceil(h' / stride) x ceil(w' / stride)`` locations, no border
  rule), the measure notebook 03 plots.  Coverage is the fraction of boxes whose best IoU
  reaches 0.5 and 0.7 (the RPN's positive threshold is 0.7, sec. 3.1.2 of the paper; the
  "max-IoU anchor" rule keeps the others positive, but with a poor start).

Proposal.  The idea is mmdetection's anchor optimiser (``tools/analysis_tools/
optimize_anchors.py``: k-means or differential evolution on box widths and heights, with the
mean best IoU between centred boxes and anchors as the objective).  Our anchors are a
``scales x ratios`` product, so we fit those two lists: start from quantiles (scales at the
``(i + 0.5) / S`` quantiles of the sizes, ratios at the ``(j + 0.5) / R`` quantiles of the
aspects, both in log space), then a few rounds of coordinate search, each value multiplied by
``0.8 .. 1.25``, keeping a change when the mean best *centred* IoU (shape only, cheap:
``(G, A)``) rises.  Then, for each image-size factor (``1, 1.5, 2`` by default: the anchors
scale with the image), the full-grid coverage is measured, and the candidates (the current
anchors competing at factor 1) are ranked by :func:`score`, the mean of the coverages at
IoU 0.5 and 0.7: 0.7 is the RPN's positive threshold, so anchors that reach it give the RPN
real positives, while 0.5 alone keeps anchors that only the max-IoU rule makes positive.  The
smallest factor within 0.01 of the best score is proposed (bigger images cost time and
memory, so only a real gain earns them), at equal factor the higher score.  Small boxes gain
from a bigger image because anchor centres are ``stride`` pixels apart: a 16-pixel box
between two centres 8 pixels apart cannot reach IoU 0.7 with any anchor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from frcnn_lib.runtime.errors import FrcnnError

THRESHOLDS = (0.5, 0.7)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def resize_scale(height, width, min_side, max_side):
    """The pipeline's resize: ``(scale, h', w')``, as ``pipeline.resize_image`` computes it."""
    scale = min(min_side / min(height, width), max_side / max(height, width))
    return scale, max(int(round(height * scale)), 1), max(int(round(width * scale)), 1)


def resized_boxes(data, min_side, max_side, max_images=None, seed=0):
    """Training boxes after resizing, grouped by resized image size.

    Returns ``{(h', w'): (G_i, 4) float32}``; ``max_images`` picks a seeded random subset of
    the records (all of them when ``None`` or when there are fewer).
    """
    indices = np.arange(len(data))
    if max_images is not None and len(data) > max_images:
        indices = np.sort(np.random.default_rng(seed).choice(len(data), max_images, replace=False))
    groups = {}
    for i in indices:
        record = data[int(i)]
        keep = ~record.difficult
        if not keep.any():
            continue
        scale, h, w = resize_scale(record.height, record.width, min_side, max_side)
        groups.setdefault((h, w), []).append(record.boxes[keep] * np.float32(scale))
    return {size: np.concatenate(parts).astype(np.float32) for size, parts in groups.items()}


def size_and_aspect(boxes):
    """``(G, 4)`` xyxy -> ``sizes (G,) = sqrt(w h)``, ``aspects (G,) = h / w``."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.sqrt(w * h), h / w


def best_anchor_iou(groups, stride, scales, ratios, chunk=4096):
    """Per box, the largest IoU with any anchor of its image: ``(G,)`` float32, boxes in the
    order of ``groups`` (a dict from :func:`resized_boxes`)."""
    import tensorflow as tf

    from frcnn_lib.anchors import generate_anchors
    from frcnn_lib.boxes import iou

    out = []
    for (h, w), boxes in groups.items():
        anchors = generate_anchors(math.ceil(h / stride), math.ceil(w / stride), stride,
                                   tuple(float(s) for s in scales), tuple(float(r) for r in ratios))
        for start in range(0, len(boxes), chunk):       # (chunk, N) at a time bounds memory
            out.append(tf.reduce_max(iou(boxes[start:start + chunk], anchors), axis=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def centred_iou(sizes, aspects, scales, ratios):
    """Shape-only IoU of every box with every anchor shape, both centred at the origin:
    ``(G,), (G,) -> (G, S * R)``."""
    bw, bh = sizes / np.sqrt(aspects), sizes * np.sqrt(aspects)
    s, r = np.meshgrid(np.asarray(scales, float), np.asarray(ratios, float), indexing="ij")
    aw, ah = (s / np.sqrt(r)).ravel(), (s * np.sqrt(r)).ravel()
    inter = np.minimum(bw[:, None], aw) * np.minimum(bh[:, None], ah)
    return inter / (bw[:, None] * bh[:, None] + aw * ah - inter)


def fit_scales_ratios(sizes, aspects, num_scales, num_ratios, rounds=4):
    """Scales and ratios for the boxes: quantile start, then coordinate search on the mean
    best centred IoU (see the module docstring).  Returns ``(scales, ratios)`` tuples, sorted,
    scales rounded to whole pixels and ratios to 2 decimals."""
    q_s = (np.arange(num_scales) + 0.5) / num_scales
    q_r = (np.arange(num_ratios) + 0.5) / num_ratios
    scales = np.exp(np.quantile(np.log(sizes), q_s))
    ratios = np.exp(np.quantile(np.log(aspects), q_r))

    def objective(s, r):
        return centred_iou(sizes, aspects, s, r).max(axis=1).mean()

    best = objective(scales, ratios)
    factors = (0.8, 0.9, 1.1, 1.25)
    for _ in range(rounds):
        improved = False
        for values in (scales, ratios):
            for i in range(len(values)):
                for f in factors:
                    old = values[i]
                    values[i] = old * f
                    score = objective(scales, ratios)
                    if score > best + 1e-9:
                        best, improved = score, True
                    else:
                        values[i] = old
        if not improved:
            break
    scales = tuple(sorted({max(1, int(round(s))) for s in scales}))
    ratios = tuple(sorted({round(float(r), 2) for r in ratios}))
    return scales, ratios


RANKING = ("ranked by the mean of the coverages at IoU>=0.5 and IoU>=0.7 (0.7: the RPN's "
           f"positive threshold); the smallest image within {0.01:g} of the best wins")
TOLERANCE = 0.01


def score(cov):
    """The ranking score of a coverage dict: ``(iou>=0.5 + iou>=0.7) / 2``."""
    return 0.5 * (cov["iou>=0.5"] + cov["iou>=0.7"])


def choose(candidates, tolerance=TOLERANCE):
    """Index of the proposal among ``[(image factor, coverage dict)]``: the smallest factor
    whose :func:`score` is within ``tolerance`` of the best, then the highest score, then the
    first (the current anchors come first, so they win a tie)."""
    best = max(score(c) for _, c in candidates)
    good = [i for i, (_, c) in enumerate(candidates) if score(c) >= best - tolerance]
    return min(good, key=lambda i: (candidates[i][0], -score(candidates[i][1]), i))


def coverage(best_iou):
    """``{"iou>=0.5": f, "iou>=0.7": f, "median": m}`` of a best-IoU array."""
    if len(best_iou) == 0:
        return {"iou>=0.5": float("nan"), "iou>=0.7": float("nan"), "median": float("nan")}
    out = {f"iou>={t}": float(np.mean(best_iou >= t)) for t in THRESHOLDS}
    out["median"] = float(np.median(best_iou))
    return out


@dataclass
class AnchorReport:
    """What :func:`analyse` found; ``str(report)`` is the text ``frcnn anchors`` prints."""

    num_boxes: int
    num_images: int
    min_side: int
    max_side: int
    stride: int
    size_quantiles: dict
    aspect_quantiles: dict
    current: dict                      # {"anchor_scales", "anchor_ratios", "coverage"}
    proposed: dict                     # {"anchor_scales", "anchor_ratios", "image_min_side", ...}
    sizes_tried: list = field(default_factory=list)   # [(factor, min_side, max_side, coverage)]

    def set_line(self):
        p = self.proposed
        line = (f"--set anchor_scales={json_list(p['anchor_scales'])} "
                f"--set anchor_ratios={json_list(p['anchor_ratios'])}")
        if (p["image_min_side"], p["image_max_side"]) != (self.min_side, self.max_side):
            line += f" --set image_min_side={p['image_min_side']} --set image_max_side={p['image_max_side']}"
        return line

    def __str__(self):
        def cov(c):
            return (f"IoU>=0.5 {c['iou>=0.5']:.3f}  IoU>=0.7 {c['iou>=0.7']:.3f}  "
                    f"score {score(c):.3f}  median best IoU {c['median']:.3f}")

        def quant(q):
            return "  ".join(f"p{int(round(100 * k))} {v:.3g}" for k, v in q.items())

        lines = [
            f"{self.num_boxes} boxes in {self.num_images} images, resized to min_side "
            f"{self.min_side} / max_side {self.max_side}, stride {self.stride}",
            f"box size sqrt(w*h) px: {quant(self.size_quantiles)}",
            f"box aspect h/w:        {quant(self.aspect_quantiles)}",
            f"coverage: the fraction of boxes whose best anchor reaches the IoU; candidates "
            f"{RANKING}",
            f"current  scales {json_list(self.current['anchor_scales'])} ratios "
            f"{json_list(self.current['anchor_ratios'])}: {cov(self.current['coverage'])}",
        ]
        for factor, lo, hi, c in self.sizes_tried:
            lines.append(f"fitted at image x{factor:g} ({lo}/{hi}): {cov(c)}")
        p = self.proposed
        lines += [
            f"proposed scales {json_list(p['anchor_scales'])} ratios {json_list(p['anchor_ratios'])}"
            f" at {p['image_min_side']}/{p['image_max_side']}: {cov(p['coverage'])}",
            self.set_line(),
        ]
        return "\n".join(lines)


def json_list(values):
    return "[" + ",".join(f"{v:g}" for v in values) + "]"


def analyse(data, scales, ratios, stride, min_side, max_side, factors=(1.0, 1.5, 2.0),
            max_images=2000, seed=0):
    """The anchor report of ``data`` for the current settings, and a proposal.

    Args:
      data: a DetectionData.  scales, ratios: the current ``anchor_scales`` / ``anchor_ratios``.
      stride: the backbone's stride.  min_side, max_side: the current image size settings.
      factors: image-size factors to try (1.0 must be among them).
      max_images: analyse a seeded random subset of at most this many images.

    Returns an :class:`AnchorReport`.  Raises FrcnnError if ``data`` has no training box.
    """
    if 1.0 not in factors:
        raise FrcnnError(f"factors={factors}: expected 1.0 among them")
    groups = resized_boxes(data, min_side, max_side, max_images, seed)
    boxes = np.concatenate(list(groups.values())) if groups else np.zeros((0, 4), np.float32)
    if len(boxes) == 0:
        raise FrcnnError(f"{data.name or 'dataset'}: no (non-difficult) box to fit anchors to")
    sizes, aspects = size_and_aspect(boxes)
    fit_s, fit_r = fit_scales_ratios(sizes, aspects, len(scales), len(ratios))
    current = {"anchor_scales": tuple(scales), "anchor_ratios": tuple(ratios),
               "coverage": coverage(best_anchor_iou(groups, stride, scales, ratios))}
    tried = []
    for f in sorted(factors):
        lo, hi = int(round(min_side * f)), int(round(max_side * f))
        grown = groups if f == 1.0 else resized_boxes(data, lo, hi, max_images, seed)
        fs = tuple(max(1, int(round(s * f))) for s in fit_s)
        tried.append((f, lo, hi, coverage(best_anchor_iou(grown, stride, fs, fit_r)), fs))
    # The current anchors compete too, so that the proposal is never worse than them.
    candidates = [(1.0, min_side, max_side, current["coverage"], tuple(scales), tuple(ratios))] + \
        [t + (fit_r,) for t in tried]
    f, lo, hi, cov, fs, fr = candidates[choose([(c[0], c[3]) for c in candidates])]
    n_images = len(data) if max_images is None else min(len(data), max_images)
    return AnchorReport(
        num_boxes=len(boxes), num_images=n_images, min_side=min_side, max_side=max_side,
        stride=stride,
        size_quantiles=dict(zip(QUANTILES, np.quantile(sizes, QUANTILES).tolist())),
        aspect_quantiles=dict(zip(QUANTILES, np.quantile(aspects, QUANTILES).tolist())),
        current=current,
        proposed={"anchor_scales": fs, "anchor_ratios": fr, "image_min_side": lo,
                  "image_max_side": hi, "coverage": cov},
        sizes_tried=[t[:4] for t in tried])
