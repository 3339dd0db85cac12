"""The one exception type of frcnn_lib for bad user input.

Every message names what was wrong (file, image index, field) and what was expected,
so that a user never has to read a traceback from deep inside TensorFlow.
"""


class FrcnnError(ValueError):
    """Bad user input: a malformed file, box, label, image, option or path."""


class MissingWeightsError(FrcnnError):
    """Pretrained weights that could not be loaded (no internet, no file in Keras' cache);
    the message says which file to put where."""
