"""Quiet command-line output: TensorFlow's native (C++) log kept off the terminal.

TensorFlow's C++ code logs on file descriptor 2, not through Python.  Some of it obeys
``TF_CPP_MIN_LOG_LEVEL`` (read once, when TensorFlow loads); the lines that TensorFlow's
absl logging prints while the library loads, before it is initialised, obey nothing
(``WARNING: All log messages before absl::InitializeLog() ...``, ``I0000 ... port.cc] oneDNN
custom operations are on``, ``cudart_stub.cc] Could not find cuda drivers``).  So
``silence_tensorflow`` (called by ``frcnn`` before anything imports TensorFlow):

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` (only fatal native messages) unless the user set it, and
* runs the first ``import tensorflow`` with file descriptor 2 sent to a temporary file,
  then writes back every line that is not a native log line (``NATIVE_LOG``).

Real errors stay visible: Python exceptions, warnings and frcnn's own messages do not look
like native log lines, and a failed TensorFlow operation raises a Python exception that
carries the message.  ``frcnn --verbose`` or ``FRCNN_VERBOSE=1`` skips all of this.

``import frcnn_lib`` is as quiet (:func:`quiet_library_import`, called by the package before
it imports TensorFlow), with the user's settings first: ``FRCNN_VERBOSE=1``, or a
``TF_CPP_MIN_LOG_LEVEL`` of 0 or 1 set before the import (asking for TensorFlow's info or
warnings), leaves TensorFlow's log alone; any other value set by the user is kept as it is.
A TensorFlow imported before frcnn_lib has logged already and is left alone.
"""
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager

# Both formats of TensorFlow's native log lines, and the preamble lines that come with them:
#   TF >= 2.17 (absl):  "E0000 00:00:1796149253.320857    8919 cuda_platform.cc:52] ..."
#   TF 2.16 (tsl):      "2026-12-01 08:15:38.510523: E external/local_xla/.../cuda_fft.cc:479] ..."
NATIVE_LOG = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags)")


def verbose_requested(verbose=False):
    """``--verbose`` given, or ``FRCNN_VERBOSE`` set to anything but ``""`` / ``0``."""
    return bool(verbose) or os.environ.get("FRCNN_VERBOSE", "") not in ("", "0")


def silence_tensorflow():
    """Keep TensorFlow's native start-up and info log off stderr, from here on (see above).

    Does nothing to a TensorFlow already imported (its log level is fixed by then)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def quiet_library_import():
    """``silence_tensorflow`` for ``import frcnn_lib`` unless the user asked for TensorFlow's
    log (``FRCNN_VERBOSE``, or ``TF_CPP_MIN_LOG_LEVEL`` set to 0 or 1); see the module docstring."""
    if verbose_requested() or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1"):
        return
    silence_tensorflow()


@contextmanager
def native_log_filtered():
    """Send file descriptor 2 to a temporary file; on exit, write back its non-log lines."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not NATIVE_LOG.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` inside ``native_log_filtered``, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module):
            with native_log_filtered():
                exec_module(module)

        spec.loader.exec_module = quiet_exec_module
        return spec
