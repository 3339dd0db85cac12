"""Verdicts of the notebook exercises: run a learner's function, compare, explain.

Every ``check_<name>(fn)`` of this package is built from the pieces below:

* :func:`call` runs the learner's function on one case.  A stub (``NotImplementedError``)
  prints "not implemented yet"; any other exception prints one line (type, message, case).
  Either way the check stops and returns False -- never a traceback.
* :func:`compare` tells whether an answer equals the library's (shape, then values).
* :func:`diagnose` recognises a wrong answer as the output of a known wrong variant (the
  VOC +1, swapped x and y, ...) and returns its hint.
* :func:`fail` / :func:`passed` print the verdict.
* :func:`value_cases` / :func:`run_cases` run a whole list of cases; for the parts of the
  detector, :func:`graph_case` / :func:`cases_and_graph` run one case again inside
  ``tf.function``, where numpy-only code fails (with :data:`GRAPH_HINT`).

Checks return True (pass) or False, so a notebook can ``assert check_x(reference)``.
"""
import functools

import numpy as np
import tensorflow as tf

NOT_IMPLEMENTED = "not implemented yet"


class Stop(Exception):
    """Raised inside a check once its (failing) verdict is printed."""


def compact(value, max_items=24):
    """A one-line, short rendering of an array (or anything else) for a verdict."""
    if isinstance(value, str):
        return value
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 -- anything the learner returned
        return repr(value)[:200]
    if arr.dtype == object:
        return repr(value)[:200]
    if arr.size > max_items:
        head = np.array2string(arr.reshape(-1)[:8], precision=4, suppress_small=True, separator=", ")
        return f"array of shape {arr.shape}, dtype {arr.dtype}, starting {head[:-1]}, ...]"
    text = np.array2string(arr, precision=4, suppress_small=True, separator=", ",
                           max_line_width=10_000)
    return " ".join(text.split())


class NotImplementedYet(Stop):
    """Raised inside a check when the learner's function is still the stub."""


def call(title, case, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` for ``case``; on an exception, or a function that returns
    nothing, print the one-line verdict and raise Stop."""
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError:
        print(f"[ ] {title}: {NOT_IMPLEMENTED} -- write the function above, run its cell, "
              "then run this check again.")
        raise NotImplementedYet
    except Exception as error:  # noqa: BLE001 -- the learner's code may raise anything
        message = " ".join(str(error).split())
        if len(message) > 160:
            message = message[:157] + "..."
        print(f"[ERROR] {title}: your function raised {type(error).__name__}: {message} "
              f"(case: {case})")
        raise Stop
    if result is None:
        print(f"[FAIL] {title}: case '{case}' -- your function returned None: is the `return` "
              "missing at its end?")
        raise Stop
    return result


def as_array(value):
    """The learner's answer as a numpy array (tf tensors, lists and tuples welcome), or None."""
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:  # noqa: BLE001
        return None


def compare(expected, got, atol=1e-4, rtol=1e-4):
    """None if ``got`` equals ``expected`` (same shape, close values), else a short reason."""
    expected = np.asarray(expected, np.float64)
    arr = as_array(got)
    if arr is None:
        return f"the answer is not a numeric array (got {type(got).__name__})"
    if arr.shape != expected.shape:
        return f"wrong shape: expected {expected.shape}, got {arr.shape}"
    both_nan = np.isnan(expected) & np.isnan(arr)
    close = np.isclose(arr, expected, atol=atol, rtol=rtol) | both_nan
    if close.all():
        return None
    first = tuple(int(i) for i in np.argwhere(~close)[0])
    where = f" at index {first}" if arr.ndim else ""
    return (f"{int((~close).sum())} of {close.size} values differ; first{where}: "
            f"expected {expected[first]:.6g}, got {arr[first]:.6g}")


def diagnose(got, case_inputs, variants, atol=1e-4, rtol=1e-4):
    """The hint of the first wrong variant whose output on ``case_inputs`` equals ``got``.

    ``variants`` is a sequence of ``(hint, fn)``; ``fn(*case_inputs)`` gives that mistake's
    answer.  Returns None when no variant matches.
    """
    for hint, variant in variants:
        try:
            wrong = variant(*case_inputs)
        except Exception:  # noqa: BLE001 -- a variant may not apply to this case
            continue
        if compare(wrong, got, atol, rtol) is None:
            return hint
    return None


def fail(title, case, reason, expected=None, got=None, hint=None, inputs=None):
    """Print a failing verdict (case, inputs, expected vs got, hint) and raise Stop."""
    lines = [f"[FAIL] {title}: case '{case}' -- {reason}"]
    if inputs:
        lines.append("  input:    " + ", ".join(f"{k}={compact(v)}" for k, v in inputs.items()))
    if expected is not None:
        lines.append(f"  expected: {compact(expected)}")
    if got is not None:
        lines.append(f"  got:      {compact(got)}")
    if hint:
        lines.append(f"  hint:     {hint}")
    print("\n".join(lines))
    raise Stop


def passed(title, checked):
    """Print the passing verdict naming what was checked; returns True."""
    print(f"[PASS] {title}: {checked}")
    return True


def checker(title, reference=None, library=None, part=None):
    """Decorator: a check body that may raise Stop returns False instead.

    Args:
      title: the exercise's name in verdicts.
      reference: the library's answer in the learner's signature: what a notebook runs on
        when the learner's function does not pass (``frcnn_lib.course.exercises.adopt``).
      library: the library function (or module) a stuck learner reads (``show_reference``).
      part: the name under which a passing function is promoted into the detector
        (``frcnn_lib.course.promotion.PART_FIELDS``), or None.

    The check records whether its last call found a stub (``check.last_not_implemented``).
    """
    def wrap(body):
        @functools.wraps(body)
        def check(fn, *args, **kwargs):
            check.last_not_implemented = False
            try:
                return bool(body(fn, *args, **kwargs))
            except NotImplementedYet:
                check.last_not_implemented = True
                return False
            except Stop:
                return False
        check.title = title
        check.reference = reference
        check.library = library
        check.part = part
        check.last_not_implemented = False
        return check
    return wrap


NAN_HINT = "your answer has NaN: a 0 / 0 somewhere? Guard the division (result 0 there)."


def value_cases(title, fn, cases, reference, variants=(), names=None, generic_hint=None,
                atol=1e-4, rtol=1e-4, post=None):
    """``fn`` against ``reference`` on every case, in order; raises Stop (after printing the
    failing case) on the first that differs, returns nothing when all agree.

    Args:
      cases: sequence of ``(case_name, args)``; ``args`` a tuple of positional arguments.
      reference: the library's answer, ``reference(*args)``.
      variants: ``(hint, wrong_fn)`` pairs recognised in a wrong answer.
      names: argument names, to print the failing case's inputs.
      generic_hint: the hint when no variant matches.
      post: optional function applied to both answers before comparing (e.g. sorting).
    """
    post = post or (lambda x: x)
    for case, args in cases:
        expected = post(np.asarray(reference(*args), np.float64))
        got = call(title, case, fn, *[_copy(a) for a in args])
        got_array = as_array(got)
        reason = compare(expected, post(got_array) if got_array is not None else got, atol, rtol)
        if reason is None:
            continue
        hint = diagnose(got, args, variants, atol, rtol) if got_array is not None else None
        if hint is None and got_array is not None and got_array.size and np.isnan(got_array).any():
            hint = NAN_HINT
        inputs = dict(zip(names, args)) if names else None
        fail(title, case, reason, expected, got, hint or generic_hint, inputs)


def run_cases(title, fn, cases, reference, variants=(), names=None, generic_hint=None,
              atol=1e-4, rtol=1e-4, post=None):
    """The usual check: :func:`value_cases`, then the PASS verdict naming the cases."""
    value_cases(title, fn, cases, reference, variants, names, generic_hint, atol, rtol, post)
    return passed(title, f"{len(cases)} cases agree with frcnn_lib ("
                  + ", ".join(c for c, _ in cases) + ")")


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


# ----------------------------------------------------------------- the same, inside tf.function
GRAPH_HINT = ("your function works on numpy arrays but not inside the compiled training step "
              "(tf.function), where its inputs are symbolic tensors: write it with keras.ops "
              "(ops.maximum, ops.minimum, ops.where, ops.log, ops.exp, ops.stack, ...) instead "
              "of np.*, do not convert to numpy (np.asarray, .numpy(), float(x), int(x) on an "
              "input), and take sizes with ops.shape(x), not len(x) or x.shape[0].")


def _spec(value):
    """A tensor of ``value`` and its ``TensorSpec``: as in the model, the numbers of anchors,
    boxes and images are known only when it runs (dimensions of unknown size), the four
    coordinates of a box are known (a last dimension of 4 stays)."""
    arr = np.asarray(value)
    dtype = tf.int32 if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool else tf.float32
    shape = [None] * arr.ndim
    if arr.ndim >= 2 and arr.shape[-1] == 4:
        shape[-1] = 4
    return tf.constant(arr, dtype), tf.TensorSpec(shape, dtype)


def _graph_error(error):
    """The cause of an error raised while tracing, and the learner's line that raised it.

    TensorFlow's message lists the user-code frames (``File "...", line N, in name`` and the
    line's code) and ends with the error itself."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[-1] if lines else type(error).__name__
    message = message.removeprefix(f"{type(error).__name__}: ").split(" This error may indicate")[0]
    message = message.rstrip(".")
    frames = [i for i, line in enumerate(lines[:-1]) if line.startswith("File ")]
    if frames and frames[-1] + 1 < len(lines) - 1:
        frame, code = lines[frames[-1]], lines[frames[-1] + 1]
        where = frame.split(", in ")[-1].rstrip(" *")
        number = frame.split(", line ")[-1].split(",")[0]
        message += f", at `{code}` ({where}, line {number})"
    message = " ".join(message.split())
    return message[:237] + "..." if len(message) > 240 else message


def graph_case(title, fn, case, args, tensor_args, reference, atol=1e-4, rtol=1e-4, post=None):
    """Run ``fn(*args)`` inside ``tf.function``, ``args[i]`` for ``i`` in ``tensor_args`` being
    tensors of unknown size (the others stay Python values, as the model passes them), and
    compare with ``reference(*args)``; raises Stop with :data:`GRAPH_HINT` if it cannot run."""
    post = post or (lambda x: x)
    graph_case_name = f"{case}, inside tf.function"
    tensors, specs = zip(*[_spec(args[i]) for i in tensor_args])

    def body(*given):
        full = list(args)
        for i, t in zip(tensor_args, given):
            full[i] = t
        return fn(*full)

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")   # no "retracing" warning: each check traces a new function once
    try:
        got = tf.function(body, input_signature=list(specs))(*tensors)
    except Exception as error:  # noqa: BLE001 -- numpy on a symbolic tensor raises NotImplementedError
        fail(title, graph_case_name, f"your function raised {type(error).__name__} inside "
             f"tf.function: {_graph_error(error)}", hint=GRAPH_HINT)
    finally:
        logger.setLevel(level)
    if got is None:
        fail(title, graph_case_name, "your function returned None inside tf.function",
             hint="return the result (it did on numpy arrays: is a `return` inside an `if`?).")
    got = tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, got)
    got_array = as_array(got)
    expected = post(np.asarray(reference(*args), np.float64))
    reason = compare(expected, post(got_array) if got_array is not None else got, atol, rtol)
    if reason is not None:
        fail(title, graph_case_name, "inside tf.function the answer differs from the right one "
             f"(which it gave on numpy arrays): {reason}", expected, got, hint=(
                 "a Python `if`, `for` or `len()` on a tensor's values or size behaves "
                 "differently in a graph: use ops.where for choices and ops.shape(x) for sizes."))


def cases_and_graph(title, fn, cases, reference, graph, variants=(), names=None,
                    generic_hint=None, atol=1e-4, rtol=1e-4, post=None, source="frcnn_lib"):
    """The check of a part of the detector: every case against ``reference``, then
    ``graph = (case_index, tensor_args)``: that case inside ``tf.function``."""
    value_cases(title, fn, cases, reference, variants, names, generic_hint, atol, rtol, post)
    index, tensor_args = graph
    case, args = cases[index]
    graph_case(title, fn, case, args, tensor_args, reference, atol, rtol, post)
    return passed(title, f"{len(cases)} cases agree with {source} ("
                  + ", ".join(c for c, _ in cases) + f"), and '{case}' also inside tf.function "
                  "(the compiled training step)")
