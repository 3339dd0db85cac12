"""Adopt a learner's function: check it, then run the rest of the notebook on it.

``adopt(my_iou, check_iou)`` runs the check.  On a pass it returns ``my_iou`` (the notebook
goes on with the learner's code) and, for a part of the detector, writes its source to the
learner's parts folder (``frcnn_lib.course.learner_parts_dir()``), from which notebook 09
promotes it into the detector it trains (:func:`load_learner_parts`,
``frcnn_lib.course.promotion.promote``).  Otherwise it prints a TODO banner that names the library
function the notebook falls back to, and returns that, so "Run all" always completes.

``show_reference(check_iou)`` prints the library's source of the same function: the course's
answer key is the library itself.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import textwrap
import types
from pathlib import Path

from frcnn_lib.course import learner_parts_dir

_HEADER = ('"""{name}: written by the learner in the course, checked by {check}, promoted by '
           'notebook 09."""\n'
           "import math\n\nimport numpy as np\nimport tensorflow as tf\nimport keras\n"
           "from keras import ops\n\n\n")
_RULE = "=" * 92


def _library_name(check) -> str:
    lib = check.library
    if lib is None:
        return "the library's version"
    module = getattr(lib, "__module__", None) or getattr(lib, "__name__", "")
    qual = getattr(lib, "__qualname__", None)
    return f"{module}.{qual}" if qual and module != qual else str(module)


def _banner(fn_name, check, why):
    lines = [
        _RULE,
        f" TODO  {fn_name} {why}",
        f"       This notebook goes on with the library's {_library_name(check)}, so 'Run all'",
        f"       completes.  Finish {fn_name}, run its cell, then run this cell again.",
        f"       Stuck?  show_reference({check.__name__}) prints the library's code.",
        _RULE,
    ]
    print("\n".join(lines))


def _source_with_helpers(fn) -> str:
    """The source of ``fn`` and of the notebook-defined functions it calls (one level deep)."""
    seen, parts = set(), []

    def add(f):
        if f.__name__ in seen:
            return
        seen.add(f.__name__)
        parts.append(textwrap.dedent(inspect.getsource(f)))

    add(fn)
    for name in fn.__code__.co_names:
        helper = fn.__globals__.get(name)
        if isinstance(helper, types.FunctionType) and helper.__module__ == fn.__module__ \
                and helper is not fn and not name.startswith("check_"):
            add(helper)
    return "\n\n".join(reversed(parts))


def save_part(fn, check, folder: str | Path | None = None) -> Path | None:
    """Write ``fn``'s source to ``<folder>/<check.part>.py`` (named ``part`` inside); None if
    ``check`` is not a part of the detector or the source cannot be read."""
    if not check.part:
        return None
    try:
        source = _source_with_helpers(fn)
    except (OSError, TypeError):
        return None
    folder = Path(folder) if folder is not None else learner_parts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{check.part}.py"
    path.write_text(_HEADER.format(name=check.part, check=check.__name__) + source
                    + f"\n\npart = {fn.__name__}\n")
    return path


def adopt(fn, check, *check_args, save: bool = True):
    """Run ``check(fn, *check_args)``; return ``fn`` if it passes, else the library's version
    (with a banner).

    Args:
      fn: the learner's function.
      check: one of ``frcnn_lib.course.exercises.check_*``.
      check_args: what the check needs beside ``fn`` (``check_train_step``: model, images, targets).
      save: on a pass, keep the source for notebook 09 (parts of the detector only).
    """
    name = getattr(fn, "__name__", "your function")
    if check(fn, *check_args):
        where = ""
        if save and check.part:
            path = save_part(fn, check)
            if path is not None:
                where = (f" Saved as the detector's '{check.part}' part "
                         f"(runs/course/{path.parent.name}/{path.name}): notebook 09 trains with it.")
        print(f"-> From here on this notebook runs on your {name}.{where}")
        return fn
    if not check.last_not_implemented and save and check.part:
        stale = learner_parts_dir() / f"{check.part}.py"
        if stale.is_file():
            stale.unlink()       # a wrong answer replaces an earlier right one: nothing promoted
    why = "is not written yet." if check.last_not_implemented else "does not pass the check yet."
    _banner(name, check, why)
    return check.reference


def show_reference(check_or_function):
    """Print the library's source for an exercise (its check) or for any library function."""
    target = getattr(check_or_function, "library", None) or check_or_function
    print(inspect.getsource(target))


def load_learner_parts(folder: str | Path | None = None, verbose: bool = True) -> dict:
    """The learner's saved parts that still pass their check: ``{part: function}``.

    Each ``<part>.py`` in ``folder`` (default: ``learner_parts_dir()``) is imported and checked
    again, quietly; a part that is missing, fails to import or fails its check is left to the
    library.  With ``verbose``, prints one line per part of the detector.
    """
    from frcnn_lib.course.exercises import CHECKS_BY_PART
    folder = Path(folder) if folder is not None else learner_parts_dir()
    found, lines = {}, []
    for part, check in CHECKS_BY_PART.items():
        path = folder / f"{part}.py"
        if not path.is_file():
            lines.append(f"  {part:<15} frcnn_lib   (not adopted yet: notebook {check.notebook})")
            continue
        try:
            spec = importlib.util.spec_from_file_location(f"frcnn_learner_{part}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            fn = module.part
        except Exception as error:  # noqa: BLE001 -- the learner's file may hold anything
            lines.append(f"  {part:<15} frcnn_lib   ({path.name} does not load: "
                         f"{type(error).__name__}: {error})")
            continue
        with contextlib.redirect_stdout(io.StringIO()) as out:
            ok = check(fn)
        if ok:
            found[part] = fn
            lines.append(f"  {part:<15} yours       ({path.name}, {check.__name__} passes)")
        else:
            verdict = out.getvalue().strip().splitlines()[0] if out.getvalue().strip() else "fails"
            lines.append(f"  {part:<15} frcnn_lib   ({path.name} no longer passes: {verdict[:80]})")
    if verbose:
        print("\n".join(lines))
    return found
