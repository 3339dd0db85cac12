"""The common in-memory form of every detection dataset: records plus class names.

Shape glossary: ``n`` boxes of one image, ``c`` crowd regions of one image, ``K`` object
classes (background excluded).

Every reader (``shapes``, ``voc``, ``coco``) returns a :class:`DetectionData`.  Boxes are
``xyxy`` float32 in the ORIGINAL image's pixels (continuous, no +1); labels are int32 in
``1..K`` and label ``k`` is ``class_names[k - 1]``.  The pipeline resizes and pads later.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frcnn_lib.runtime.errors import FrcnnError


def _empty_boxes():
    return np.zeros((0, 4), np.float32)


def _empty_labels():
    return np.zeros((0,), np.int32)


@dataclass
class ImageRecord:
    """One annotated image.

    Attributes:
      image: where the pixels come from: a file path (``str``/``Path``, already checked to
        lie inside its dataset folder) or an in-memory ``uint8 (height, width, 3)`` array.
      boxes: ``(n, 4)`` float32 xyxy in original pixels, training targets.
      labels: ``(n,)`` int32 in ``1..K``.
      difficult: ``(n,)`` bool; VOC's flag (ignored by evaluation, left out of training by
        default).
      image_id: the dataset's own id (COCO int id, VOC file stem, shapes index).
      height, width: original image size in pixels (after EXIF orientation).
      crowd_boxes, crowd_labels: ``(c, 4)`` / ``(c,)`` COCO ``iscrowd`` regions: never
        training targets, handed to evaluation so that detections on them are ignored.
    """

    image: str | Path | np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: int | str
    height: int
    width: int
    crowd_boxes: np.ndarray = field(default_factory=_empty_boxes)
    crowd_labels: np.ndarray = field(default_factory=_empty_labels)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int32).reshape(-1)
        self.difficult = np.asarray(self.difficult, bool).reshape(-1)
        self.crowd_boxes = np.asarray(self.crowd_boxes, np.float32).reshape(-1, 4)
        self.crowd_labels = np.asarray(self.crowd_labels, np.int32).reshape(-1)
        n = len(self.boxes)
        if len(self.labels) != n or len(self.difficult) != n:
            raise FrcnnError(
                f"image {self.image_id!r}: boxes, labels and difficult must have the same "
                f"length, got {n}, {len(self.labels)}, {len(self.difficult)}")
        if len(self.crowd_labels) != len(self.crowd_boxes):
            raise FrcnnError(f"image {self.image_id!r}: crowd_boxes and crowd_labels differ "
                             "in length")

    @property
    def source(self) -> str:
        """A human-readable name for messages: the file path or ``<array image_id>``."""
        if isinstance(self.image, np.ndarray):
            return f"<in-memory image {self.image_id!r}>"
        return str(self.image)


@dataclass
class DetectionData:
    """A detection dataset: per-image records and the class names.

    Attributes:
      records: list of :class:`ImageRecord`.
      class_names: ``K`` names; label ``k`` (1-based) is ``class_names[k - 1]``.
      name: short description for logs (e.g. ``"voc:/data/VOC2007:test"``).
      label_to_category_id: for COCO, contiguous label -> original category id (to write
        COCO results); ``None`` for other datasets.
      default_sides: ``(min_side, max_side)`` the pipeline resizes to unless told
        otherwise: the paper's ``(600, 1000)`` for photos, the native size for ``shapes``.
    """

    records: list
    class_names: list
    name: str = ""
    label_to_category_id: dict | None = None
    default_sides: tuple = (600, 1000)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index) -> ImageRecord:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        """``K``, the number of object classes (background excluded)."""
        return len(self.class_names)

    @property
    def category_id_to_label(self) -> dict | None:
        """Inverse of ``label_to_category_id`` (COCO only, else ``None``)."""
        if self.label_to_category_id is None:
            return None
        return {cat: label for label, cat in self.label_to_category_id.items()}

    def read_image(self, index) -> np.ndarray:
        """Pixels of record ``index`` as ``uint8 (height, width, 3)``.

        In-memory images are returned as they are (read-only for ``shapes``, whose images
        are cached).  Raises FrcnnError naming the file if it is missing, unreadable, not
        ``uint8 (H, W, 3)`` or not the size the annotation says.
        """
        from frcnn_lib.datasets.imageio import read_image

        record = self.records[index]
        if isinstance(record.image, np.ndarray):
            image = record.image
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise FrcnnError(f"{record.source}: expected a uint8 (H, W, 3) array, got "
                                 f"{image.dtype} {image.shape}")
        else:
            image = read_image(record.image)
        if image.shape[:2] != (record.height, record.width):
            raise FrcnnError(
                f"{record.source}: image is {image.shape[0]}x{image.shape[1]} (height x width, "
                f"after EXIF orientation) but its annotation says {record.height}x{record.width}")
        return image

    def ground_truths(self) -> list:
        """Per image, the dict that ``frcnn_lib.evaluation`` takes, in original pixels.

        Keys: ``boxes (n + c, 4)`` float32, ``labels (n + c,)`` int32, ``difficult (n + c,)``
        bool and ``iscrowd (n + c,)`` bool.  COCO crowd regions are appended with
        ``difficult = iscrowd = True``: like VOC difficult boxes they neither count as misses
        nor make a matching detection a false positive.
        """
        out = []
        for r in self.records:
            c = len(r.crowd_boxes)
            out.append({
                "boxes": np.concatenate([r.boxes, r.crowd_boxes]).astype(np.float32),
                "labels": np.concatenate([r.labels, r.crowd_labels]).astype(np.int32),
                "difficult": np.concatenate([r.difficult, np.ones(c, bool)]),
                "iscrowd": np.concatenate([np.zeros(len(r.boxes), bool), np.ones(c, bool)]),
            })
        return out

    def subset(self, indices) -> "DetectionData":
        """A new DetectionData with the records at ``indices`` (same classes)."""
        return DetectionData([self.records[i] for i in indices], list(self.class_names),
                             self.name, self.label_to_category_id, self.default_sides)

    def cached(self) -> "DetectionData":
        """The same dataset, keeping each decoded image in memory after its first read.

        For training on a machine whose CPU cannot decode images as fast as the model
        trains (benchmarks/bench_pipeline.py): from the second epoch on, no JPEG is decoded
        again.  Costs ``height * width * 3`` bytes an image (Pascal VOC 2007 trainval,
        5011 images of about 500x375: 2.8 GB).  Thread-safe for the pipeline's parallel
        reads (at worst an image is decoded twice).
        """
        return _CachedDetectionData(list(self.records), list(self.class_names), self.name,
                                    self.label_to_category_id, self.default_sides)

    def max_boxes(self, use_difficult=True) -> int:
        """Largest number of training boxes in one image (at least 1)."""
        counts = [int(len(r.boxes) if use_difficult else np.sum(~r.difficult))
                  for r in self.records]
        return max([1] + counts)


def safe_join(root, relative, where) -> Path:
    """``root / relative``, refusing anything that could leave ``root``.

    ``relative`` comes from an annotation file, so it must be a plain relative path: not
    absolute, no drive, no ``..`` component, no NUL.  The check is lexical (symlinks
    that the user placed inside ``root`` are followed, as they are the user's choice).

    Args:
      root: the dataset folder.
      relative: the path read from an annotation.
      where: what to name in the error (e.g. ``"annotations.json: images[3].file_name"``).
    """
    if not isinstance(relative, str) or not relative.strip():
        raise FrcnnError(f"{where}: expected a non-empty relative file name, got {relative!r}")
    if "\x00" in relative:
        raise FrcnnError(f"{where}: file name contains a NUL character")
    parts = relative.replace("\\", "/").split("/")
    if (relative.startswith(("/", "\\")) or os.path.isabs(relative)
            or (len(relative) > 1 and relative[1] == ":") or ".." in parts):
        raise FrcnnError(
            f"{where}: file name {relative!r} leaves the dataset folder {str(root)!r}; "
            "expected a path relative to it without '..'")
    return Path(root) / Path(*[p for p in parts if p not in ("", ".")])


def is_int(value, minimum=None) -> bool:
    """True for a Python or numpy integer (not a bool), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return False
    return minimum is None or value >= minimum


def file_exists(path) -> bool:
    """``Path(path).is_file()`` that answers False instead of raising (too long a name...)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


class _CachedDetectionData(DetectionData):
    """A DetectionData whose ``read_image`` remembers what it decoded (see ``cached``)."""

    def read_image(self, index) -> np.ndarray:
        cache = self.__dict__.setdefault("_images", {})
        image = cache.get(index)
        if image is None:
            image = super().read_image(index)
            cache[index] = image
        return image
