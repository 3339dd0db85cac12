"""Check of the RoIAlign sampling-grid exercise.

Source of truth: :func:`frcnn_lib.roi.roi_align` itself, probed on a feature map whose two
channels hold each pixel's own row and column: bilinear sampling of such a ramp returns the
sample's continuous coordinates, so ``roi_align(ramp, roi, output_size=n, sampling_ratio=1)``
reads back the ``n`` sample positions along each axis.
Shape glossary: ``S`` output size, ``r`` sampling ratio, ``n = S * r`` samples per axis.
"""
import numpy as np

from frcnn_lib import roi as roi_lib
from frcnn_lib.exercises._report import checker, run_cases

_MAP = 64  # probe map size: large enough that every case's samples lie inside it


def _grid_reference(roi, stride, output_size, sampling_ratio):
    n = output_size * sampling_ratio
    rows, cols = np.meshgrid(np.arange(_MAP), np.arange(_MAP), indexing="ij")
    ramp = np.stack([rows, cols], axis=-1)[None].astype(np.float32)          # (1, H, W, 2)
    out = roi_lib.roi_align(ramp, np.asarray(roi, np.float32)[None], np.zeros(1, np.int32),
                            stride, output_size=n, sampling_ratio=1).numpy()[0]  # (n, n, 2)
    return np.stack([out[:, 0, 0], out[0, :, 1]])                             # (2, n): ys, xs


def _grid_np(roi, stride, s, r, offset=0.5, spacing="centres", divide=True, swap=False):
    x1, y1, x2, y2 = np.asarray(roi, np.float64) / (stride if divide else 1.0)
    if offset:
        x1, y1, x2, y2 = x1 - offset, y1 - offset, x2 - offset, y2 - offset
    n = s * r
    k = np.arange(n)
    t = (k + 0.5) / n if spacing == "centres" else k / max(n - 1, 1)
    ys, xs = y1 + t * (y2 - y1), x1 + t * (x2 - x1)
    return np.stack([xs, ys]) if swap else np.stack([ys, xs])


_GRID_VARIANTS = [
    ("the half-pixel offset is missing: image x is feature coordinate x / stride - 0.5 "
     "(feature pixel j sits over the image point (j + 0.5) * stride).",
     lambda *a: _grid_np(*a, offset=0.0)),
    ("the samples run edge to edge (k / (n - 1)): RoIAlign puts them at the centres of n equal "
     "slices, lo + (k + 0.5) * (hi - lo) / n.", lambda *a: _grid_np(*a, spacing="edges")),
    ("ys and xs are swapped: return (ys, xs), ys from y1, y2 (rows).",
     lambda *a: _grid_np(*a, swap=True)),
    ("these are image pixels: divide by the stride to get feature coordinates.",
     lambda *a: _grid_np(*a, divide=False, offset=0.0)),
    ("these are image pixels minus 0.5: divide by the stride first, then subtract 0.5.",
     lambda *a: _grid_np(*a, divide=False)),
]


@checker("roi_align_grid")
def check_roi_align_grid(fn):
    """Check ``fn(roi (4,) xyxy image pixels, stride, output_size, sampling_ratio) -> (ys, xs)``,
    the ``output_size * sampling_ratio`` sample positions along each axis in continuous
    feature coordinates."""
    f = np.float32
    cases = [
        ("a 32 x 32 RoI on stride 16, 1 bin, 1 sample", (np.array([16, 16, 48, 48], f), 16, 1, 1)),
        ("a 32 x 32 RoI, 2 x 2 bins, 2 samples each", (np.array([16, 16, 48, 48], f), 16, 2, 2)),
        ("a wide RoI (64 x 24) at a sub-pixel position, 7 bins x 2",
         (np.array([20.5, 33.25, 84.5, 57.25], f), 16, 7, 2)),
        ("stride 8, 3 bins x 3 samples", (np.array([10, 40, 50, 70], f), 8, 3, 3)),
    ]
    return run_cases("roi_align_grid", fn, cases, _grid_reference, _GRID_VARIANTS,
                     ["roi", "stride", "output_size", "sampling_ratio"], atol=1e-3)
