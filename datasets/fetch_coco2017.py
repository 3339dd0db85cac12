"""Download COCO 2017 (annotations, val images; train images on request) into ``datasets/data/coco/``.

    python datasets/fetch_coco2017.py [--train] [--dest datasets/data] [--url-base URL]

Sizes: annotations 241 MB, val2017 778 MB, train2017 18 GB (only with ``--train``).
Result: ``datasets/data/coco/{annotations,val2017,train2017}/``; load with
``frcnn_lib.datasets.load("coco:datasets/data/coco/annotations/instances_val2017.json:datasets/data/coco/val2017")``.
Offline: put the zip files (names and MD5 below) in ``datasets/data/downloads/`` and rerun.
"""
import argparse
from pathlib import Path

from _fetch import download, extract, run

HERE = Path(__file__).resolve().parent
ARCHIVES = {  # part -> (path under the base URL, md5)
    "annotations": ("annotations/annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c"),
    "val": ("zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
    "train": ("zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2"),
}
URL_BASE = "http://images.cocodataset.org/"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=HERE / "data",
                        help="data folder; COCO goes to DEST/coco (default: datasets/data)")
    parser.add_argument("--train", action="store_true", help="also fetch train2017 (18 GB)")
    parser.add_argument("--url-base", default=URL_BASE, help=f"base URL (default {URL_BASE})")
    args = parser.parse_args()
    parts = ["annotations", "val"] + (["train"] if args.train else [])
    for part in parts:
        path, md5 = ARCHIVES[part]
        name = path.rsplit("/", 1)[-1]
        archive = download([args.url_base.rstrip("/") + "/" + path],
                           args.dest / "downloads" / name, md5)
        extract(archive, args.dest / "coco")
    print(f"COCO 2017 ({', '.join(parts)}) ready in {args.dest / 'coco'}")


if __name__ == "__main__":
    run(main)
