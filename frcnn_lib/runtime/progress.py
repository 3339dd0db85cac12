"""Progress of long work, suited to where the output goes.

On a terminal (or in Jupyter) Keras' own live bar, so that loops look like ``fit``; in a
pipe or a log file, which cannot redraw a line, plain lines without escape codes (Keras'
``Progbar`` decides it may redraw whenever ``posix`` is imported, so it is not asked there).
``stage`` announces a long step that shows no progress of its own.
"""
import sys
import time


def interactive(stream=None):
    """Whether ``stream`` (default ``sys.stdout``) is a terminal or a Jupyter output."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def fit_verbosity(verbose):
    """``verbose`` for ``keras.Model.fit``: the live bar (1) only where it can be redrawn,
    else one plain line per epoch (2).  0 stays 0."""
    return 2 if verbose == 1 and not interactive() else verbose


def stage(message, enabled=True):
    """Print ``message ...`` before a long silent step (data generation, evaluation, export)."""
    if enabled:
        print(f"{message} ...", flush=True)


def progress_bar(iterable, label, enabled=True, unit="batch"):
    """Yield from ``iterable`` while showing progress titled ``label``: a live
    ``keras.utils.Progbar`` on a terminal, else a plain line at 0, 25, 50, 75 and 100 %."""
    items = list(iterable)
    if not enabled or not items:
        yield from items
        return
    if interactive():
        import keras

        print(label)
        bar = keras.utils.Progbar(len(items), unit_name=unit)
        for i, item in enumerate(items):
            yield item
            bar.update(i + 1)
        return
    n, start = len(items), time.perf_counter()
    marks = {max(1, round(n * q / 4)) for q in (1, 2, 3)} - {n}
    print(f"{label}: {n} {unit}es" if unit.endswith("h") else f"{label}: {n} {unit}s", flush=True)
    for i, item in enumerate(items, 1):
        yield item
        if i in marks:
            print(f"{label}: {i}/{n} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"{label}: {n}/{n} done in {time.perf_counter() - start:.1f} s", flush=True)
