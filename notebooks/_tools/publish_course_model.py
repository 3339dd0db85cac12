"""Publish the course's trained model as a release asset, and pin it in the package.

Notebooks 06, 08, 10, 11 and 12 download the model notebook 09 trains when they run where 09 did
not (Colab, Binder: one runtime per notebook). The download is pinned in ONE place,
`frcnn_lib/course/course_model.json` (URL and sha256, read by `frcnn_lib.course.course_model`);
this script writes it and uploads the file:

    make course                                               # full mode: runs/course/model.keras
    python notebooks/_tools/publish_course_model.py           # pin it, then `gh release upload`
    python notebooks/_tools/publish_course_model.py --dry-run # pin it, print the upload command

The asset goes to the release of COURSE_REF of COURSE_REPO (notebooks/_tools/setup_cell.py), so
the release must exist (`gh release create COURSE_REF`). Commit the new course_model.json with the
notebooks, before tagging COURSE_REF: the pinned record ships inside the library installed at that
tag. Without `gh` on the PATH the script prints the upload command instead of running it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "frcnn_lib" / "course" / "course_model.json"
ASSET = "frcnn-course-model.keras"


def _setup_cell():
    spec = importlib.util.spec_from_file_location("setup_cell", Path(__file__).with_name("setup_cell.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pin(model: Path, repo: str, ref: str, record: Path | None = None) -> dict:
    """Write the record of `model` as the asset `ASSET` of release `ref` of `repo` to `record`
    (default `RECORD`); return it."""
    record = RECORD if record is None else record
    digest = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    entry = {"repo": repo, "ref": ref, "file": ASSET,
             "url": f"{repo}/releases/download/{ref}/{ASSET}",
             "sha256": digest.hexdigest(), "size": model.stat().st_size}
    record.write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "course" / "model.keras",
                        help="the model file (default: runs/course/model.keras, make course's)")
    parser.add_argument("--dry-run", action="store_true", help="pin, and print the upload command only")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        print(f"{args.model}: no such file (run `make course` first)", file=sys.stderr)
        return 1
    cell = _setup_cell()
    entry = pin(args.model, cell.COURSE_REPO, cell.COURSE_REF)
    print(f"pinned {RECORD.relative_to(ROOT)}: {entry['url']} sha256 {entry['sha256']} ({entry['size']} bytes)")
    staged = args.model.with_name(ASSET)          # gh names the asset after the file
    command = ["gh", "release", "upload", cell.COURSE_REF, str(staged), "--clobber",
               "--repo", cell.COURSE_REPO.removeprefix("https://github.com/")]
    if args.dry_run or shutil.which("gh") is None:
        why = "--dry-run" if args.dry_run else "gh is not installed"
        print(f"not uploaded ({why}); upload with:\n  cp {args.model} {staged} && {' '.join(command)}")
        return 0
    shutil.copyfile(args.model, staged)
    try:
        subprocess.run(command, check=True)
    finally:
        staged.unlink(missing_ok=True)
    print(f"uploaded {ASSET} to the release {cell.COURSE_REF} of {cell.COURSE_REPO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
