"""What the subcommands share: option types and help texts, the command's :class:`Session`
(where results go, which folders it created), input and output checks, ``--set`` and
``--data`` parsing.

Nothing here imports TensorFlow: ``frcnn --help`` builds every parser from these pieces.
"""
import argparse
import json
import os
import sys

DATA_HELP = ("dataset spec: 'shapes', 'shapes:SPLIT' (train, val, test), "
             "'voc:VOCDEVKIT/VOC2007:SPLIT' or 'coco:ANNOTATIONS.json:IMAGE_DIR'")

CLASSES_HELP = ("the classes, in label order: 'a,b,c' or a file with one name a "
                "line; a subset of the data's classes selects them (boxes of the other classes "
                "are dropped, in training and evaluation alike; images left without boxes stay "
                "as images with no object). Default: all the data's classes (voc: the sorted "
                "object names of the split's annotations)")


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format (``frcnn: error: ...``, exit 2)."""

    def error(self, message):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{command}: " if command else ""
        self.exit(2, f"frcnn: error: {where}{message} (see '{self.prog} --help')\n")


def positive(kind):
    """An argparse type: a positive finite ``kind`` (int or float)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'number' if kind is float else 'whole number'}, "
                                             f"got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive finite value, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def nonnegative_int(text):
    """An argparse type: a whole number >= 0 (a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def fraction(text):
    """A threshold or IoU: a finite number in [0, 1] (nan, inf, -0.1 and 1.5 are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # False for nan too
        raise argparse.ArgumentTypeError(f"expected a finite number in [0, 1], got {text!r}")
    return value


def is_fraction_setting(key):
    """FasterRCNN arguments that are IoUs, score thresholds or fractions: in [0, 1]."""
    return key.endswith(("_iou", "_iou_low", "_iou_high", "_threshold", "_fraction"))


class Session:
    """One command's output state, passed to its ``run``: ``results`` is the stream for
    results (the real stdout, while ``main`` sends all other printing to stderr), and
    ``created`` the folders this command created (outermost first), removed again, if
    still empty, when it fails."""

    def __init__(self, results=None):
        self.results = results if results is not None else sys.stdout
        self.created = []

    def result(self, text):
        """Print a result (JSON, a report, a "written to" line) on the results stream."""
        print(text, file=self.results, flush=True)

    def writable_folder(self, path, what="--out"):
        """Create ``path`` (and its parents) if missing and check that it can be written;
        remembers what it created."""
        from frcnn_lib.runtime.errors import FrcnnError
        missing = _missing_parents(path)
        try:
            try:
                os.makedirs(path, exist_ok=True)
            finally:  # also the parents made before a failure
                self.created.extend(m for m in missing if os.path.isdir(m) and m not in self.created)
            probe = os.path.join(path, ".frcnn-write-test")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as err:
            raise FrcnnError(f"{what} {path}: cannot write there ({err.strerror or err})") from err
        return path

    def writable_file(self, path, what="--out"):
        """Check before long work that ``path`` can be written (its folder is created)."""
        from frcnn_lib.runtime.errors import FrcnnError
        if os.path.isdir(path):
            raise FrcnnError(f"{what} {path}: is a folder; expected a file name")
        self.writable_folder(os.path.dirname(os.path.abspath(path)), f"{what} {path}: folder")
        return path

    def remove_created_folders(self):
        """After a failure: remove the folders this command created, deepest first, while
        empty (a folder that existed before, or holds anything, e.g. checkpoints, is kept)."""
        for folder in reversed(self.created):
            try:
                os.rmdir(folder)
            except OSError:
                pass
        self.created.clear()


def _missing_parents(path):
    """The folders ``os.makedirs(path)`` would create, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while path and not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def existing_file(path, what):
    """Fail early (before TensorFlow loads) on an input file that is not there."""
    from frcnn_lib.runtime.errors import FrcnnError
    if not os.path.isfile(path):
        state = "is a folder" if os.path.isdir(path) else "does not exist"
        raise FrcnnError(f"{what} {path}: {state}; expected a file")
    return path


# Settings whose default None means "follow another setting": what a value may be instead.
NONE_DEFAULT_KINDS = {
    "backbone_frozen_stages": (int, "null or a whole number of stages"),
    "backbone_frozen_batchnorm": (bool, "null, true or false"),
}


def check_overrides(overrides, defaults):
    """``--set`` values against the FasterRCNN arguments: known key, value of the right type."""
    import difflib
    import math
    from frcnn_lib.runtime.errors import FrcnnError

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for key, value in overrides.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FrcnnError(f"--set {key}: unknown FasterRCNN argument{hint}; see "
                             f"frcnn_lib.model.DEFAULTS for the accepted ones")
        default = defaults[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = number(value) and float(value).is_integer(), "a whole number"
            if ok:
                overrides[key] = int(value)
        elif isinstance(default, float) and is_fraction_setting(key):
            ok, expected = number(value) and 0 <= value <= 1, "a number in [0, 1]"
        elif isinstance(default, float):
            ok, expected = number(value), "a finite number"
        elif isinstance(default, (tuple, list)):
            ok = isinstance(value, list) and bool(value) and all(number(v) for v in value)
            expected = "a JSON list of numbers, e.g. [16, 32]"
        elif default is None and key in NONE_DEFAULT_KINDS:
            kind, expected = NONE_DEFAULT_KINDS[key]
            ok = value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool)))
        elif default is None or isinstance(default, str):
            ok, expected = value is None or isinstance(value, str), "a string"
        else:
            ok, expected = True, ""
        if not ok:
            raise FrcnnError(f"--set {key}={json.dumps(value)}: expected {expected}")
    return overrides


def parse_overrides(pairs):
    """``--set KEY=VALUE`` arguments as a dict, VALUE read as JSON (else kept as a string)."""
    from frcnn_lib.runtime.errors import FrcnnError
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FrcnnError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_data(spec, classes=None, **kwargs):
    """``datasets.load(spec)``, restricted to ``classes`` (a list of names) if given.

    ``classes`` selects and orders the classes (``datasets.classes.select_classes``: boxes
    of other classes are dropped).  A VOC folder is read with every object name of its
    annotations, so ``classes`` may leave some out, and may also name classes the split has
    no object of (a fixed label order for several splits); for shapes and COCO data each
    name must be one of the dataset's classes.  Without ``classes`` a VOC folder's classes
    are the sorted object names of its annotations.
    """
    from frcnn_lib import datasets
    from frcnn_lib.datasets.classes import select_classes
    from frcnn_lib.runtime.errors import FrcnnError
    if spec.strip().startswith("voc:") and classes:
        from frcnn_lib.datasets import voc
        root, _, split = spec.strip()[4:].partition(":")
        try:
            found = voc.annotation_class_names(root, split or "trainval")
        except FrcnnError:  # a split without objects, or a broken file: the reader says what
            found = []
        kwargs["class_names"] = list(classes) + [n for n in found if n not in classes]
    elif spec.strip().startswith("voc:"):
        kwargs["class_names"] = "auto"
    data = datasets.load(spec, **kwargs)
    return select_classes(data, classes) if classes else data
