"""frcnn_lib: Faster R-CNN (Ren et al. 2015) in TensorFlow 2 / Keras 3.

``from frcnn_lib import FasterRCNN`` gives the detector, a ``keras.Model``.  The pipeline
stages live one per module: ``boxes``, ``anchors``, ``matching``, ``sampling``,
``targets``, ``nms``, ``roi``, ``losses``, ``backbones``, ``rpn``, ``rcnn``, ``model``;
data in ``datasets``; metrics in ``evaluation``; the command line in ``cli``.
"""
__version__ = "0.1.0"

from frcnn_lib.errors import FrcnnError  # noqa: F401


def __getattr__(name):
    # Imported lazily so that ``import frcnn_lib.boxes`` does not build Keras layers.
    if name == "FasterRCNN":
        from frcnn_lib.model import FasterRCNN
        return FasterRCNN
    raise AttributeError(f"module 'frcnn_lib' has no attribute {name!r}")
