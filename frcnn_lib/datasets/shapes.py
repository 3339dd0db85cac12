"""``shapes``: the embedded default dataset, drawn on the fly (no download).

Shape glossary: ``H, W`` image size, ``n`` objects in one image, ``V`` polygon vertices,
``S`` supersampling factor.

Each image holds 0 to 6 filled shapes of five classes (``CLASS_NAMES``) on a cluttered
background: a colour gradient or texture, low-frequency blotches, thin lines, small
distractor blobs (at most 8 px across at 160 px, below the smallest object) and pixel
noise.  Objects vary in size (about 12 to 80 px on a 160 px image, scaled with the image),
colour, rotation and aspect ratio (ellipses and triangles are elongated, stars and
triangles rotate freely, squares tilt by up to 25 degrees).

Every shape is a polygon (circles and ellipses with 96 vertices), rendered antialiased by
drawing at ``S = 4`` times the resolution and box-averaging down.  Its box is computed
from the vertices, so it is tight to the drawn shape in continuous xyxy.

Occlusion rule: shapes are drawn in order, later over earlier.  A new shape is placed only
if every earlier shape keeps at least ``MIN_VISIBLE`` (40 %) of its area visible AND the
extent of its visible pixels (those over 50 % covered) is still its unoccluded extent;
otherwise the placement is retried elsewhere, and after a few failures the shape is not
placed at all.  So no label is more than 60 % hidden, and occluders may cut into a shape
but never its extreme points: every box stays tight to visible pixels.

Determinism: image ``i`` of split ``s`` is drawn from its own generator seeded by
``(seed, s, i)`` (``numpy.random.SeedSequence``), so it does not depend on how many images
are asked for, and the three splits never share a stream.  Rendered images are cached in
memory (an LRU of 4096 images).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw

from frcnn_lib.datasets.records import DetectionData, ImageRecord, is_int
from frcnn_lib.runtime.errors import FrcnnError

CLASS_NAMES = ["circle", "square", "triangle", "star", "ellipse"]
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_NUM_IMAGES = {"train": 1000, "val": 200, "test": 200}
DEFAULT_SEED = 0
MIN_VISIBLE = 0.4
MAX_OBJECTS = 6
EMPTY_FRACTION = 0.05      # share of images with no object
SUPERSAMPLE = 4
_MIN_CONTRAST = 70.0       # RGB distance between a shape and what lies under it


def load(split="train", num_images=None, image_size=(160, 160), seed=None) -> DetectionData:
    """The ``shapes`` dataset.

    Args:
      split: ``"train"``, ``"val"`` or ``"test"`` (disjoint random streams).
      num_images: how many images (default 1000 for train, 200 for val and test).
      image_size: ``(H, W)`` of every image, each side at least 32.
      seed: non-negative int; ``None`` means the canonical seed 0.

    Returns:
      DetectionData whose records hold in-memory ``uint8 (H, W, 3)`` images.
    """
    if not isinstance(split, str) or split not in SPLITS:
        raise FrcnnError(f"shapes: split {split!r} is unknown; expected one of {sorted(SPLITS)}")
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES[split]
    if not is_int(num_images, 0):
        raise FrcnnError(f"shapes: num_images must be a non-negative int, got {num_images!r}")
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise FrcnnError(f"shapes: image_size must be (height, width), "
                         f"got {image_size!r}") from None
    if height < 32 or width < 32:
        raise FrcnnError(f"shapes: image_size sides must be at least 32, got {image_size!r}")
    seed = DEFAULT_SEED if seed is None else seed
    if not is_int(seed, 0):
        raise FrcnnError(f"shapes: seed must be a non-negative int or None, got {seed!r}")

    records = []
    for index in range(int(num_images)):
        image, boxes, labels = render(int(seed), split, index, (height, width))
        records.append(ImageRecord(
            image=image, boxes=boxes, labels=labels, difficult=np.zeros(len(labels), bool),
            image_id=index, height=height, width=width))
    return DetectionData(records, list(CLASS_NAMES), name=f"shapes:{split}",
                         default_sides=(min(height, width), max(height, width)))


def render(seed, split, index, image_size=(160, 160)):
    """Draw image ``index`` of ``split``: ``(image uint8 (H, W, 3), boxes (n, 4), labels (n,))``.

    The arrays are cached and read-only.
    """
    height, width = (int(v) for v in image_size)
    return _render_cached(int(seed), SPLITS[split], int(index), height, width)


@functools.lru_cache(maxsize=4096)
def _render_cached(seed, split_code, index, height, width):
    image, boxes, labels, _ = _draw(seed, split_code, index, height, width)
    for a in (image, boxes, labels):
        a.flags.writeable = False
    return image, boxes, labels


def _draw(seed, split_code, index, height, width):
    """Uncached rendering; also returns, per placed object, a dict with its fill
    ``colour``, ``full`` and ``visible`` coverage ``(H, W)`` (the tests check boxes
    against pixels with them)."""
    rng = np.random.default_rng([seed, split_code, index])
    canvas = _background(rng, height, width)
    boxes, labels, placed = _place_objects(rng, canvas)
    noise = int(rng.integers(0, 9))  # uniform pixel noise of amplitude 0..8
    if noise:
        canvas += rng.integers(-noise, noise + 1, canvas.shape, dtype=np.int8)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int32)
    return image, boxes, labels, placed


# ----------------------------------------------------------------------------- background

def _random_colour(rng, saturation=(0.5, 1.0), value=(0.45, 1.0)):
    """An RGB colour (float32 (3,), 0..255) from HSV ranges."""
    h = rng.uniform(0, 1)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32) * 255


def _background(rng, height, width):
    """``float32 (H, W, 3)``: gradient + texture + blotches, then lines and distractor blobs."""
    scale = min(height, width) / 160.0
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    t = x * np.float32(math.cos(angle)) + y * np.float32(math.sin(angle))  # (H, W)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0 = _random_colour(rng, (0.0, 0.6), (0.2, 0.95))
    c1 = _random_colour(rng, (0.0, 0.6), (0.2, 0.95))

    texture = np.zeros((height, width), np.float32)
    kind = rng.integers(3)
    if kind == 1:  # stripes
        period = rng.uniform(6, 20) * scale
        a2 = rng.uniform(0, np.pi)
        texture = rng.uniform(6, 18) * np.sin(
            (x * math.cos(a2) + y * math.sin(a2)) * (2 * np.pi / period))
    elif kind == 2:  # checkerboard
        cell = max(2, int(rng.uniform(6, 16) * scale))
        texture = rng.uniform(5, 14) * (((x // cell + y // cell) % 2) * 2 - 1)
    # Channels built as planes (numpy is slow at broadcasting over a trailing axis of 3).
    canvas = np.stack([c0[c] + (c1[c] - c0[c]) * t + texture for c in range(3)], -1)
    # Low-frequency blotches: coarse noise upsampled.
    amplitude = rng.uniform(4, 16)
    coarse = rng.integers(0, 256, (max(2, height // 20), max(2, width // 20), 3), dtype=np.uint8)
    blotch = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    canvas += (blotch.astype(np.float32) - 127.5) * np.float32(amplitude / 127.5)

    clutter = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(clutter)
    for _ in range(rng.integers(0, 6)):   # thin lines across the image
        pts = rng.uniform(0, 1, 4) * [width, height, width, height]
        colour = tuple(int(c) for c in _random_colour(rng, (0, 1), (0.2, 1)))
        draw.line([tuple(pts[:2]), tuple(pts[2:])], fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(0, 9)):   # distractor blobs, at most 8 px across (at 160 px)
        r = rng.uniform(1.0, 4.0) * scale
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        colour = tuple(int(c) for c in _random_colour(rng, (0, 1), (0.2, 1)))
        draw.ellipse([cx - r, cy - r * rng.uniform(0.6, 1.0), cx + r, cy + r], fill=colour)
    return np.asarray(clutter, np.float32).copy()


# ----------------------------------------------------------------------------- objects

def _polygon(rng, class_index, size):
    """Vertices ``(V, 2)`` float64 of a shape of class ``class_index`` centred on 0 whose
    box has its longer side equal to ``size``."""
    name = CLASS_NAMES[class_index]
    if name == "circle":
        a = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        pts = np.stack([np.cos(a), np.sin(a)], -1)
    elif name == "ellipse":
        a = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        pts = np.stack([np.cos(a), rng.uniform(0.35, 0.6) * np.sin(a)], -1)
        pts = _rotate(pts, rng.uniform(0, np.pi))
    elif name == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
        pts = _rotate(pts, np.deg2rad(rng.uniform(-25, 25)))
    elif name == "triangle":
        ratio = rng.uniform(0.6, 1.4)  # height / base
        pts = np.array([[-0.5, ratio / 3], [0.5, ratio / 3], [0.0, -2 * ratio / 3]])
        pts = _rotate(pts, rng.uniform(0, 2 * np.pi))
    else:  # star
        inner = rng.uniform(0.4, 0.5)
        a = np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        pts = _rotate(np.stack([radius * np.sin(a), -radius * np.cos(a)], -1),
                      rng.uniform(0, 2 * np.pi))
    extent = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    return pts * (size / extent)


def _rotate(pts, angle):
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _coverage(pts, height, width):
    """Antialiased coverage of polygon ``pts (V, 2)`` (continuous pixel coordinates).

    Returns ``(alpha, (y0, x0))``: ``alpha`` float32 in 0..1 over the integer crop
    ``[y0, y0 + h) x [x0, x0 + w)`` that holds the polygon, clipped to the image.
    """
    x0 = max(int(math.floor(pts[:, 0].min())), 0)
    y0 = max(int(math.floor(pts[:, 1].min())), 0)
    x1 = min(int(math.ceil(pts[:, 0].max())), width)
    y1 = min(int(math.ceil(pts[:, 1].max())), height)
    s = SUPERSAMPLE
    mask = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    # PIL's integer coordinates are pixel centres: continuous x sits at x * s - 0.5.
    local = (pts - [x0, y0]) * s - 0.5
    ImageDraw.Draw(mask).polygon([tuple(p) for p in local], fill=255)
    alpha = np.asarray(mask.reduce(s), np.float32) / 255.0
    return alpha, (y0, x0)


def _extent(mask):
    """``(x1, y1, x2, y2)`` integer extent of the True pixels of ``mask (H, W)``, or None."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(ys) == 0:
        return None
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])


def _place_objects(rng, canvas):
    """Draw up to ``MAX_OBJECTS`` shapes onto ``canvas (H, W, 3)`` in place.

    Returns ``(boxes list of (4,), labels list of int, placed list of dict)`` for the
    shapes placed.
    """
    height, width = canvas.shape[:2]
    scale = min(height, width) / 160.0
    n_wanted = 0 if rng.uniform() < EMPTY_FRACTION else int(rng.integers(1, MAX_OBJECTS + 1))
    placed = []  # dicts: full (H, W) alpha, visible (H, W), extent, colour
    boxes, labels = [], []
    for _ in range(n_wanted):
        class_index = int(rng.integers(len(CLASS_NAMES)))
        size = math.exp(rng.uniform(math.log(12 * scale), math.log(80 * scale)))
        size = min(size, 0.9 * min(height, width))
        shape = _polygon(rng, class_index, size)
        base_colour = _random_colour(rng)
        for _attempt in range(6):
            lo, hi = shape.min(0), shape.max(0)
            cx = rng.uniform(1 - lo[0], width - 1 - hi[0])
            cy = rng.uniform(1 - lo[1], height - 1 - hi[1])
            pts = shape + [cx, cy]
            alpha_crop, (y0, x0) = _coverage(pts, height, width)
            alpha = np.zeros((height, width), np.float32)
            alpha[y0:y0 + alpha_crop.shape[0], x0:x0 + alpha_crop.shape[1]] = alpha_crop
            inside = alpha > 0.5
            if not inside.any():
                continue
            colour = _contrasting(rng, base_colour, canvas, inside, placed)
            if colour is None or not _keeps_others_visible(alpha, placed):
                continue
            for other in placed:
                other["visible"] *= 1.0 - alpha
            # A gentle shading gradient across the shape, then alpha-composite in the crop.
            h, w = alpha_crop.shape
            shade = np.linspace(-1, 1, w, dtype=np.float32) * np.float32(rng.uniform(-12, 12))
            fill = colour[None, None, :] + shade[None, :, None]
            region = canvas[y0:y0 + h, x0:x0 + w]
            region += alpha_crop[..., None] * (fill - region)
            placed.append({"full": alpha, "visible": alpha.copy(),
                           "extent": _extent(inside), "colour": colour})
            boxes.append(np.concatenate([pts.min(0), pts.max(0)]))
            labels.append(class_index + 1)
            break
    return boxes, labels, placed


def _contrasting(rng, colour, canvas, inside, placed):
    """``colour`` or a re-drawn one that differs by ``_MIN_CONTRAST`` from what it covers."""
    under = [canvas[inside].mean(0)]
    under += [o["colour"] for o in placed if (o["visible"][inside] > 0.5).any()]
    for _ in range(8):
        if all(np.linalg.norm(colour - u) >= _MIN_CONTRAST for u in under):
            return colour
        colour = _random_colour(rng)
    return None


def _keeps_others_visible(alpha, placed):
    """True if drawing coverage ``alpha`` keeps every placed shape's occlusion rule."""
    for other in placed:
        visible = other["visible"] * (1.0 - alpha)
        if visible.sum() < MIN_VISIBLE * other["full"].sum():
            return False
        extent = _extent(visible > 0.5)
        if extent is None or not np.array_equal(extent, other["extent"]):
            return False
    return True
