"""The course's side of the library: what the notebooks need beyond the paper's parts.

- ``exercises``: the checkers that grade the learner's functions, and ``adopt``;
- ``promotion``: ``promote(model, iou=..., nms=...)`` runs a detector on the learner's parts;
- ``trained_model``: where the course keeps the detector that notebook 09 trains, and
  ``course_model``: that detector for a notebook (local file, pinned download, or a stand-in);
- ``custom_backbone``: plugging your own trunk into a ``FasterRCNN`` (notebook 12).
"""
from frcnn_lib.course.trained_model import (COURSE_DIR, FAST_MODEL, FULL_MODEL,  # noqa: F401
                                            LEARNER_DIR, course_model, course_model_path,
                                            learner_parts_dir, repository_root)
