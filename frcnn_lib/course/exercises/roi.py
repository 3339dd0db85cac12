"""Check of the RoIAlign sampling-grid exercise.

Source of truth: :mod:`frcnn_lib.roi`: an image coordinate ``x`` is the continuous feature
coordinate ``x / stride - 0.5``, and RoIAlign's ``n = S * r`` samples per axis sit at the
centres of ``n`` equal slices of the RoI (``roi._axis_positions`` with ``first = 0.5 / n``,
``last = (n - 0.5) / n``, as ``roi.roi_align`` calls it).  tests/test_exercises.py checks
this grid against ``roi.roi_align`` itself, probed on a feature map of its own coordinates.
Shape glossary: ``R`` RoIs, ``S`` output size, ``r`` sampling ratio, ``n = S * r`` samples
per axis.
"""
import numpy as np
import tensorflow as tf

from frcnn_lib import roi as roi_lib
from frcnn_lib.course.exercises._report import checker
from frcnn_lib.course.exercises._report import cases_and_graph


def roi_align_grid(rois, stride, output_size, sampling_ratio):
    """The library's answer in the exercise's signature: ``rois (R, 4)`` xyxy image pixels ->
    ``ys (R, n)``, ``xs (R, n)``, RoIAlign's sample positions in continuous feature
    coordinates (``frcnn_lib.roi``)."""
    f = tf.convert_to_tensor(rois, tf.float32) / tf.cast(stride, tf.float32) - 0.5
    x1, y1, x2, y2 = tf.unstack(f, axis=-1)
    n = output_size * sampling_ratio
    first, last = 0.5 / n, (n - 0.5) / n
    return (roi_lib._axis_positions(y1, y2 - y1, n, first, last),
            roi_lib._axis_positions(x1, x2 - x1, n, first, last))


def _grid_reference(rois, stride, output_size, sampling_ratio):
    ys, xs = roi_align_grid(rois, stride, output_size, sampling_ratio)
    return np.stack([ys.numpy(), xs.numpy()])                                # (2, R, n)


def _grid_np(rois, stride, s, r, offset=0.5, spacing="centres", divide=True, swap=False):
    f = np.asarray(rois, np.float64) / (stride if divide else 1.0) - offset
    x1, y1, x2, y2 = (f[:, k:k + 1] for k in range(4))
    n = s * r
    k = np.arange(n)
    t = (k + 0.5) / n if spacing == "centres" else (k / max(n - 1, 1) if spacing == "edges"
                                                     else k / n)
    ys, xs = y1 + t * (y2 - y1), x1 + t * (x2 - x1)
    return np.stack([xs, ys]) if swap else np.stack([ys, xs])


_GRID_VARIANTS = [
    ("the half-pixel offset is missing: image x is feature coordinate x / stride - 0.5 "
     "(feature pixel j sits over the image point (j + 0.5) * stride).",
     lambda *a: _grid_np(*a, offset=0.0)),
    ("the samples run edge to edge (k / (n - 1)): RoIAlign puts them at the centres of n equal "
     "slices, lo + (k + 0.5) * (hi - lo) / n.", lambda *a: _grid_np(*a, spacing="edges")),
    ("the samples sit at the slices' starts (k / n): RoIAlign puts them at their centres, "
     "lo + (k + 0.5) * (hi - lo) / n.", lambda *a: _grid_np(*a, spacing="starts")),
    ("ys and xs are swapped: return (ys, xs), ys from y1, y2 (rows).",
     lambda *a: _grid_np(*a, swap=True)),
    ("these are image pixels: divide by the stride to get feature coordinates.",
     lambda *a: _grid_np(*a, divide=False, offset=0.0)),
    ("these are image pixels minus 0.5: divide by the stride first, then subtract 0.5.",
     lambda *a: _grid_np(*a, divide=False)),
    ("the offset is subtracted before dividing by the stride: x / stride - 0.5, not "
     "(x - 0.5) / stride.", lambda ro, st, s, r: _grid_np(np.asarray(ro, np.float64) - 0.5, st,
                                                           s, r, offset=0.0)),
]


@checker("roi_align_grid", reference=roi_align_grid, library=roi_lib, part="roi_align_grid")
def check_roi_align_grid(fn):
    """Check ``fn(rois (R, 4) xyxy image pixels, stride, output_size, sampling_ratio) ->
    (ys (R, n), xs (R, n))``, the ``n = output_size * sampling_ratio`` sample positions
    along each axis of every RoI in continuous feature coordinates."""
    f = np.float32
    rng = np.random.default_rng(17)
    xy = rng.uniform(0, 200, (3, 2))
    three = np.concatenate([xy, xy + rng.uniform(8, 120, (3, 2))], axis=1).astype(f)
    cases = [
        ("a 32 x 32 RoI on stride 16, 1 bin, 1 sample", (np.array([[16, 16, 48, 48]], f), 16, 1, 1)),
        ("a 32 x 32 RoI, 2 x 2 bins, 2 samples each", (np.array([[16, 16, 48, 48]], f), 16, 2, 2)),
        ("a wide RoI (64 x 24) at a sub-pixel position, 7 bins x 2",
         (np.array([[20.5, 33.25, 84.5, 57.25]], f), 16, 7, 2)),
        ("stride 8, 3 bins x 3 samples", (np.array([[10, 40, 50, 70]], f), 8, 3, 3)),
        ("3 RoIs at once, 7 bins x 2 (seeded)", (three, 16, 7, 2)),
    ]
    return cases_and_graph("roi_align_grid", fn, cases, _grid_reference, (len(cases) - 1, (0,)),
                           _GRID_VARIANTS, ["rois", "stride", "output_size", "sampling_ratio"],
                           atol=1e-3, source="frcnn_lib.roi",
                           generic_hint="ys[i, k] = y1' + (k + 0.5) * (y2' - y1') / n with "
                                        "y' = y / stride - 0.5, for RoI i (xs the same with x).")
