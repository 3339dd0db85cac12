"""The ``frcnn`` console script: the command line without TensorFlow until a command needs it.

``import frcnn_lib`` imports TensorFlow and registers ``FasterRCNN`` with Keras (what
``keras.models.load_model`` after ``import frcnn_lib`` relies on).  This module, outside the
package, tells ``frcnn_lib/__init__.py`` to defer that, so that ``frcnn --help`` and
argument errors answer in a fraction of a second and print no TensorFlow log; the commands
import what they need (``frcnn_lib.model`` registers the model as before).
``python -m frcnn_lib.cli`` works too, with the eager import.
"""
import sys

DEFER_TENSORFLOW = True  # read by frcnn_lib/__init__.py


def main():
    from frcnn_lib.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
