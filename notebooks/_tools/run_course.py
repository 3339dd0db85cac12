"""Run the course notebooks in full mode, in place, and clean their outputs for committing.

    python notebooks/_tools/run_course.py                 # 01..12 in order (what `make course` runs)
    python notebooks/_tools/run_course.py 03 10           # only the notebooks whose names start so

Each notebook runs on a fresh kernel with `notebooks/` as its working directory and `FRCNN_FAST`
removed from the environment (full mode: what a learner runs). Widget state is saved in the
notebook's metadata so that nbviewer and GitHub can draw the widgets' first view. After the run,
outputs are cleaned (`clean_notebook`): TensorFlow / absl C++ log lines are dropped from stderr
streams, machine paths (the repository root, the home folder, temporary folders) are replaced by
placeholders, carriage-return progress lines keep only their final state, and nbclient's timing
metadata is removed. Per-notebook wall times are printed at the end, in the README's table format.

A failing notebook stops the run (its partial outputs are still written, so the error is visible).

If a notebook stalls (kernel idle, no progress: seen at 06's widget cells on 2026-12-01 and
2026-12-02, jupyter/nbclient#312), run it again alone with a short cell timeout, e.g.
`run_course.py --timeout 120 06 08 10 11` (there it went through in seconds); 09 and 12 have
cells that need longer (09: ~25 min, 12: ~5 min).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1]
ROOT = NOTEBOOKS.parent

# Lines TensorFlow, XLA, absl and oneDNN write from C++ (or Python warnings about them): never course content.
_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"  # absl prefix: I0000 00:00:1796149464.946106  11814 port.cc:153]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "    # TF C++ prefix: 2026-12-01 12:00:00.000000: I tensorflow/...
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|.*oneDNN custom operations are on"
    r"|.*This TensorFlow binary is optimized to use"
    r"|.*To enable the following instructions:"
    r"|.*Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|.*computation placer already registered"
    r"|.*TF-TRT Warning"
    r"|.*cuda_(?:dnn|blas|fft|executor|driver)\.cc"
    r"|.*external/local_xla/"
    r")"
)


def _path_replacements() -> list[tuple[re.Pattern, str]]:
    """Machine paths and the placeholders they become (longest first)."""
    pairs = []
    for path, name in ((ROOT, "<repo>"), (Path.home(), "~")):
        pairs.append((re.compile(re.escape(str(path)) + r"(?=/|\b)"), name))
    # TensorBoard's file names carry a time stamp, the host name and a process id.
    pairs.append((re.compile(r"events\.out\.tfevents\.\d+\.[^\s/]+?\.\d+\.v2"),
                  "events.out.tfevents.<time>.<host>.<pid>.v2"))
    tmp = re.escape(tempfile.gettempdir().rstrip("/"))
    # /tmp/frcnn_project_t7y89186/x -> <tmp>/frcnn_project_/x: the random suffix changes every run.
    pairs.insert(0, (re.compile(tmp + r"/([A-Za-z]+(?:_[A-Za-z]+)*_)[A-Za-z0-9_]{6,}"), r"<tmp>/\1"))
    pairs.insert(1, (re.compile(tmp + r"/tmp[A-Za-z0-9_]{6,}"), "<tmp>/tmp"))
    return pairs


def clean_text(text: str, replacements=None) -> str:
    """One output text, cleaned: machine paths replaced, progress lines collapsed."""
    for pattern, placeholder in replacements or _path_replacements():
        text = pattern.sub(placeholder, text)
    # "50%\r100%\n" -> "100%\n": a terminal overwrites the line, a saved notebook would keep every state.
    lines = [line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
             for line in text.split("\n")]
    return "\n".join(lines)


def clean_notebook(nb) -> int:
    """Clean `nb`'s outputs in place; returns the number of log lines dropped."""
    replacements = _path_replacements()
    dropped = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                lines = out.text.splitlines(keepends=True)
                if out.name == "stderr":
                    good = [line for line in lines if not _LOG_LINE.match(line)]
                    dropped += len(lines) - len(good)
                    lines = good
                out.text = clean_text("".join(lines), replacements)
                if not out.text.strip():
                    continue
            elif out.output_type in ("execute_result", "display_data"):
                if "text/plain" in out.get("data", {}):
                    out.data["text/plain"] = clean_text(out.data["text/plain"], replacements)
            elif out.output_type == "error":
                out.traceback = [clean_text(line, replacements) for line in out.traceback]
                out.evalue = clean_text(out.evalue, replacements)
            kept.append(out)
        cell.outputs = kept
    return dropped


def course_notebooks(prefixes=()) -> list[Path]:
    paths = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    return paths


def _execute_cell_by_cell(client: NotebookClient) -> None:
    """``client.execute()``, one cell at a time on a kernel we start and stop ourselves.

    In this workplace ``client.execute()`` with ``store_widget_state=True`` stopped making
    progress at notebook 06's trained-RPN widget (kernel idle, client waiting) in three runs
    out of three, while the same cells executed one by one went through; so we drive the
    kernel the second way, and store the widget state at the end as ``execute`` would."""
    client.reset_execution_trackers()
    client.km = client.create_kernel_manager()
    client.start_new_kernel()
    client.start_new_kernel_client()
    try:
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        client.set_widgets_metadata()
    finally:
        client._cleanup_kernel()


def run_notebook(path: Path, timeout: int | None = None) -> float:
    """Execute one notebook in full mode in place; returns its wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    env_fast = os.environ.pop("FRCNN_FAST", None)   # the kernel inherits this process's environment
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            record_timing=False, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        _execute_cell_by_cell(client)
    finally:
        seconds = time.perf_counter() - start
        clean_notebook(nb)
        nbformat.write(nb, path)
        if env_fast is not None:
            os.environ["FRCNN_FAST"] = env_fast
    return seconds


def promote_reference_answers() -> list[str]:
    """Fill the learner's parts folder (``runs/course/learner/``) with the reference answers,
    as if a learner had solved notebooks 03-08: notebook 09 then trains a learner's detector.
    (The committed notebooks keep their stubs; their exercise cells show the TODO banners.)"""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reference_answers
    from frcnn_lib.course import learner_parts_dir
    from frcnn_lib.course.exercises import CHECKS_BY_PART
    from frcnn_lib.course.exercises.adopt import save_part
    folder = learner_parts_dir(ROOT)
    written = []
    for part, check in CHECKS_BY_PART.items():
        save_part(reference_answers.PROMOTABLE[part], check, folder)
        written.append(part)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose file names start with these")
    # A finite timeout, always: with none, nbclient's reply poll can hit an `assert timeout is not None`
    # (an AssertionError with no message) when the kernel is quiet for a while, e.g. behind a widget.
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default: 3600)")
    parser.add_argument("--promote-reference-answers", action="store_true",
                        help="before notebook 09, write the reference answers to runs/course/learner/ "
                             "(how the committed outputs of 09 show a learner's detector trained)")
    args = parser.parse_args(argv)
    times = []
    for path in course_notebooks(args.prefixes):
        if args.promote_reference_answers and path.name.startswith("09"):
            print("learner's parts from the reference answers:", ", ".join(promote_reference_answers()))
        print(f"running {path.name} ...", flush=True)
        try:
            seconds = run_notebook(path, args.timeout)
        except Exception as error:   # the notebook keeps its outputs up to the failing cell
            print(f"FAILED {path.name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            return 1
        times.append((path.name, seconds))
        print(f"  {path.name}: {seconds:.0f} s", flush=True)
    print("\nfull mode, wall time per notebook:")
    for name, seconds in times:
        print(f"| {name[:2]} | {seconds / 60:.1f} min ({seconds:.0f} s) |")
    print(f"total: {sum(s for _, s in times) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
