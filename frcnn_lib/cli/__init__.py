"""The ``frcnn`` command line: ``train``, ``evaluate``, ``predict``, ``export``, ``anchors``,
``demo`` and ``serve``, one module each (``add_parser(subparsers)`` and ``run(args,
session)``), with the shared option types and output helpers in ``common.py``.

Results (metrics JSON, reports, "written to" lines) go to stdout; progress, logs and errors
go to stderr, so that ``frcnn evaluate ... | python -m json.tool`` works without ``--quiet``.
Bad input ends with a one-line ``frcnn: error: ...`` on stderr and exit status 2; nothing
prints a traceback for a user's mistake, and a failed command removes the (empty) output
folders it created.  Every command takes ``--quiet`` and ``--verbose``
(TensorFlow's native log, hidden by default: see quiet.py); the console script runs this
module without loading TensorFlow until a command needs it (``_frcnn_console.py``): the
command modules import TensorFlow inside ``run`` only.
"""
import contextlib
import sys
import time

from frcnn_lib import __version__
from frcnn_lib.cli import anchors, demo, evaluate, export, predict, serve, train
from frcnn_lib.cli.common import Parser, Session

# In the order of ``frcnn --help``.
COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "export": export,
            "anchors": anchors, "demo": demo, "serve": serve}


def build_parser():
    """The ``frcnn`` parser with every command's options (``--quiet`` and ``--verbose`` included)."""
    p = Parser(prog="frcnn", description="Faster R-CNN (Ren et al. 2015): train, "
               "evaluate, predict and export detectors built with frcnn_lib. Results go to "
               "stdout; progress, logs and errors to stderr (so 'frcnn evaluate ... | python -m "
               "json.tool' works). A failed command removes the empty output folders it created.")
    p.add_argument("--version", action="version", version=f"frcnn {__version__}",
                   help="print 'frcnn VERSION' and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        _add_output_options(module.add_parser(sub))
    return p


def _add_output_options(command):
    """``--quiet`` and ``--verbose`` on every command."""
    if "--quiet" not in command._option_string_actions:
        command.add_argument("--quiet", action="store_true", help="print only results and errors")
    command.add_argument("--verbose", action="store_true", help="also show TensorFlow's native "
                         "log lines (hidden by default; or set FRCNN_VERBOSE=1)")
    return command


def main(argv=None):
    """Run ``frcnn ARGV``; returns the exit status (2: bad input, 130: interrupted)."""
    args = build_parser().parse_args(argv)
    session = Session(results=sys.stdout)
    try:
        # Everything printed while the command runs (progress, Keras' bars, logs) goes to
        # stderr; results go to stdout through session.result().
        with contextlib.redirect_stdout(sys.stderr):
            code = _run(args, session)
    except BaseException:
        session.remove_created_folders()
        raise
    if code != 0:
        session.remove_created_folders()
    return code


def _run(args, session):
    from frcnn_lib.runtime import quiet
    from frcnn_lib.runtime.backend import require_tensorflow_backend
    from frcnn_lib.runtime.errors import FrcnnError
    if not quiet.verbose_requested(args.verbose):
        quiet.silence_tensorflow()  # before any command imports TensorFlow
    start = time.perf_counter()
    try:
        require_tensorflow_backend()
        COMMANDS[args.command].run(args, session)
    except FrcnnError as err:
        print(f"frcnn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        # Ctrl-C, or SIGINT / SIGTERM caught by training (checkpoints.TrainingInterrupted).
        print(f"frcnn: {_interrupted(stop)}", file=sys.stderr)
        code = getattr(stop, "exit_code", 130)
    else:
        code = None
    if code is not None:
        # The traceback is gone now: free an interrupted tf.data pipeline (held by a Keras
        # reference cycle) before exit, while its threads can still finish (see input_checks).
        import gc
        gc.collect()
        return code
    if not getattr(args, "quiet", False):
        print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _interrupted(stop):
    """The one line printed when a command is interrupted."""
    folder = getattr(stop, "folder", None)
    if folder is None:
        return "interrupted"
    import os
    import signal

    name = signal.Signals(stop.signum).name
    if stop.state is None:
        return f"interrupted by {name}; no checkpoint written (the weights were not finite)"
    s = stop.state
    where = f"end of epoch {s['epoch']}" if not s["epoch_step"] else \
        f"{s['epoch_step']} steps into epoch {s['epoch'] + 1}"
    out = os.path.dirname(os.path.abspath(folder))
    return (f"interrupted by {name}: checkpoint at step {s['step']} ({where}) in {folder}; "
            f"continue with: frcnn train --out {out} --resume")
