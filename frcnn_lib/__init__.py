"""frcnn_lib: Faster R-CNN (Ren et al. 2015) in TensorFlow 2 / Keras 3.

``from frcnn_lib import FasterRCNN`` gives the detector, a ``keras.Model``; importing the
package registers it with Keras, so ``keras.models.load_model("x.keras")`` works after
``import frcnn_lib``.  The pipeline stages live one per module: ``boxes``, ``anchors``,
``matching``, ``sampling``, ``targets``, ``nms``, ``roi``, ``losses``, ``backbones``,
``rpn``, ``rcnn``, ``model``; data in ``datasets``; metrics in ``evaluation``; training runs
in ``training`` and ``checkpoints``; the command line in ``cli``.

Only the ``frcnn`` console script (``_frcnn_console``) defers TensorFlow, so that
``frcnn --help`` and argument errors answer at once; ``FasterRCNN`` is then loaded on
first use (PEP 562 ``__getattr__``).

The import is as quiet as the command line: TensorFlow's native start-up log stays off
stderr (``TF_CPP_MIN_LOG_LEVEL=3`` unless you set it yourself; ``FRCNN_VERBOSE=1`` or a
level of 0 or 1 brings it back; see ``frcnn_lib.runtime.quiet``).
"""
import sys

__version__ = "0.3.0"

from frcnn_lib.runtime.errors import FrcnnError  # noqa: F401,E402


def __getattr__(name):
    if name == "FasterRCNN":
        return _load_model()
    raise AttributeError(f"module 'frcnn_lib' has no attribute {name!r}")


def _load_model():
    from frcnn_lib.runtime.backend import require_tensorflow_backend
    from frcnn_lib.runtime.quiet import quiet_library_import

    quiet_library_import()  # before anything here imports TensorFlow

    require_tensorflow_backend()  # before Keras loads: a clear error, not one from inside Keras
    from frcnn_lib.model import FasterRCNN
    # Registered with Keras, so that ``import frcnn_lib`` is enough for load_model to rebuild the
    # optimizer and schedule of a model trained by ``frcnn train`` or ``runs.make_optimizer``.
    from frcnn_lib.training import optimizers, schedules  # noqa: F401

    return FasterRCNN


if not getattr(sys.modules.get("_frcnn_console"), "DEFER_TENSORFLOW", False):
    FasterRCNN = _load_model()
