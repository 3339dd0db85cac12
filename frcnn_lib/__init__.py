"""frcnn_lib: Faster R-CNN (Ren et al. 2015) in TensorFlow 2 / Keras 3.

``from frcnn_lib import FasterRCNN`` gives the detector, a ``keras.Model``; importing the
package registers it with Keras, so ``keras.models.load_model("x.keras")`` works after
``import frcnn_lib``.  The pipeline stages live one per module: ``boxes``, ``anchors``,
``matching``, ``sampling``, ``targets``, ``nms``, ``roi``, ``losses``, ``backbones``,
``rpn``, ``rcnn``, ``model``; data in ``datasets``; metrics in ``evaluation``; training runs
in ``training`` and ``checkpoints``; the command line in ``cli``.
"""
__version__ = "0.1.0"

from frcnn_lib.errors import FrcnnError  # noqa: F401
from frcnn_lib.model import FasterRCNN  # noqa: F401
