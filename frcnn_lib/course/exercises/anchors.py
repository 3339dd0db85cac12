"""Checks of the anchor exercises: the feature-map size and the anchor grid.

Source of truth: :func:`frcnn_lib.anchors.generate_anchors` (location-major, centres at
``(j + 0.5) * stride``, ratio = height / width, area ``scale**2``).
Shape glossary: ``H, W`` feature-map size, ``A`` anchors per location, ``N = H * W * A``.
"""
import numpy as np

from frcnn_lib.anchors import generate_anchors
from frcnn_lib.course.exercises._report import call, checker, compare, diagnose, fail, passed, run_cases
from frcnn_lib.course.exercises._report import graph_case


# ----------------------------------------------------------------- feature-map size
def vgg16_feature_map_size(height, width):
    """``(feature_height, feature_width)`` of VGG-16's conv5_3 for a ``height x width`` image.

    conv5_3 comes after four 2x2 max-pools of stride 2 with padding "valid", each of which
    floors (the fifth pool is not used by Faster R-CNN).  The library's answer to notebook
    02's exercise; the library itself builds the network (``frcnn_lib.backbones``) and reads
    the size off its output, and tests/test_exercises.py checks that the two agree.
    """
    height, width = int(height), int(width)
    for _ in range(4):
        height, width = height // 2, width // 2
    return height, width


def _feature_size_reference(height, width):
    return np.array(vgg16_feature_map_size(height, width), np.float64)


_SIZE_VARIANTS = [
    ("you rounded to the nearest: each pool floors (h // 2, four times), so 600 x 1000 -> "
     "37 x 62.", lambda h, w: np.floor(np.array([h, w]) / 16.0 + 0.5)),
    ("you rounded up: each 2x2 pool with padding 'valid' floors, so 600 x 1000 -> 37 x 62.",
     lambda h, w: np.array([-(-h // 16), -(-w // 16)], np.float64)),
    ("not an integer: a feature map has whole pixels; each pool floors.",
     lambda h, w: np.array([h, w]) / 16.0),
    ("that is five pools (stride 32): conv5_3 comes after the fourth pool; the fifth is not used.",
     lambda h, w: np.array([h // 32, w // 32], np.float64)),
    ("that is three pools (stride 8): conv5_3 comes after the fourth pool.",
     lambda h, w: np.array([h // 8, w // 8], np.float64)),
    ("height and width are swapped: return (feature_height, feature_width).",
     lambda h, w: _feature_size_reference(w, h)),
]


@checker("feature_map_size", reference=vgg16_feature_map_size, library=vgg16_feature_map_size)
def check_feature_map_size(fn):
    """Check ``fn(height, width) -> (feature_height, feature_width)`` of VGG-16's conv5_3."""
    cases = [("160 x 160", (160, 160)), ("375 x 500 (a VOC image)", (375, 500)),
             ("600 x 800", (600, 800)), ("600 x 1000", (600, 1000)),
             ("15 x 17 (smaller than a stride)", (15, 17))]
    return run_cases("feature_map_size", fn, cases, _feature_size_reference, _SIZE_VARIANTS,
                     ["height", "width"])


# ----------------------------------------------------------------- the anchor grid
def _anchors_reference(fh, fw, stride, scales, ratios):
    return generate_anchors(fh, fw, stride, scales, ratios).numpy()


def _anchors_np(fh, fw, stride, scales, ratios, offset=0.5, ratio_inverted=False,
                swap_xy=False, order="location"):
    """numpy anchors with knobs for the usual mistakes."""
    s = np.asarray(scales, np.float64)[:, None]
    r = np.asarray(ratios, np.float64)[None, :]
    if ratio_inverted:
        r = 1.0 / r
    w = (s / np.sqrt(r)).reshape(-1)
    h = (s * np.sqrt(r)).reshape(-1)
    if order == "ratio_major":  # ratios vary slowest within a location
        w = (s / np.sqrt(r)).T.reshape(-1)
        h = (s * np.sqrt(r)).T.reshape(-1)
    base = np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)            # (A, 4)
    gi, gj = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")  # (H, W) row, column
    if order == "column_major":
        gi, gj = gi.T, gj.T
    cx, cy = (gj.reshape(-1) + offset) * stride, (gi.reshape(-1) + offset) * stride
    if swap_xy:
        cx, cy = cy, cx
    centres = np.stack([cx, cy, cx, cy], axis=1)                       # (H*W, 4)
    if order == "anchor_major":
        return (base[:, None, :] + centres[None, :, :]).reshape(-1, 4)
    return (centres[:, None, :] + base[None, :, :]).reshape(-1, 4)


_ANCHOR_VARIANTS = [
    ("the centres are off by half a stride: feature pixel (i, j) sits over the centre of its "
     "patch, ((j + 0.5) * stride, (i + 0.5) * stride), not its corner.",
     lambda *a: _anchors_np(*a, offset=0.0)),
    ("the ratio is inverted: ratio = height / width, so w = s / sqrt(r) and h = s * sqrt(r).",
     lambda *a: _anchors_np(*a, ratio_inverted=True)),
    ("x and y are swapped: column j gives x, row i gives y (meshgrid(ys, xs, indexing='ij') "
     "returns cy, cx).", lambda *a: _anchors_np(*a, swap_xy=True)),
    ("the locations run column by column: the order is row by row (all of row 0, left to "
     "right, then row 1).", lambda *a: _anchors_np(*a, order="column_major")),
    ("the order is anchor-major (all locations for anchor 0, then anchor 1): it must be "
     "location-major, the A anchors of location 0 first, to match the head's reshape.",
     lambda *a: _anchors_np(*a, order="anchor_major")),
    ("within a location the ratios vary slowest: scales vary slowest (scale 0 with every "
     "ratio, then scale 1, ...).", lambda *a: _anchors_np(*a, order="ratio_major")),
]


def _sorted_rows(x):
    x = np.round(np.asarray(x, np.float64), 3)
    return x[np.lexsort(x.T[::-1])] if x.ndim == 2 else x


@checker("generate_anchors", reference=generate_anchors, library=generate_anchors, part="anchors")
def check_generate_anchors(fn):
    """Check ``fn(feature_height, feature_width, stride, scales, ratios) -> (H*W*A, 4)``; the
    feature sizes may be tensors (inside the compiled step they come from ``tf.shape``)."""
    title = "generate_anchors"
    cases = [
        ("1 x 1 map, one square anchor", (1, 1, 16, (32,), (1.0,))),
        ("1 x 1 map, ratio 2 (tall)", (1, 1, 16, (32,), (2.0,))),
        ("2 x 3 map (not square), one anchor", (2, 3, 8, (8,), (1.0,))),
        ("1 x 1 map, 2 scales x 2 ratios", (1, 1, 16, (16, 32), (0.5, 2.0))),
        ("3 x 4 map, the paper's 3 x 3 anchors", (3, 4, 16, (128, 256, 512), (0.5, 1.0, 2.0))),
    ]
    names = ["feature_height", "feature_width", "stride", "scales", "ratios"]
    for case, args in cases:
        expected = _anchors_reference(*args)
        got = call(title, case, fn, *args)
        reason = compare(expected, got, atol=1e-3)
        if reason is None:
            continue
        hint = diagnose(got, args, _ANCHOR_VARIANTS, atol=1e-3)
        if hint is None and compare(_sorted_rows(expected), _sorted_rows(got), atol=1e-3) is None:
            hint = ("the right anchors in the wrong order: location-major, row by row, and "
                    "within a location scales slowest.")
        fail(title, case, reason, expected, got,
             hint or "an anchor of scale s, ratio r is s / sqrt(r) wide and s * sqrt(r) high, "
                     "centred at ((j + 0.5) * stride, (i + 0.5) * stride).",
             dict(zip(names, args)))
    graph, args = cases[-1]
    graph_case(title, fn, graph + " (feature sizes as tensors)", args, (0, 1), _anchors_reference,
               atol=1e-3)
    return passed(title, f"{len(cases)} cases agree with frcnn_lib.anchors.generate_anchors ("
                  + ", ".join(c for c, _ in cases) + f"), and '{graph}' also inside tf.function "
                  "with the feature sizes as tensors (the compiled training step)")
