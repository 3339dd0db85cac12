"""Download Pascal VOC 2007 (trainval + test, about 870 MB) into ``datasets/data/``.

    python datasets/fetch_voc2007.py [--dest datasets/data] [--url-base URL]

Result: ``datasets/data/VOCdevkit/VOC2007/`` with ``Annotations/``, ``ImageSets/``,
``JPEGImages/``; load it with ``frcnn_lib.datasets.load("voc:datasets/data/VOCdevkit/VOC2007:test")``.
Offline: put the two tar files (names and MD5 below) in ``datasets/data/downloads/`` and
rerun; they are checked and extracted without network access.
"""
import argparse
from pathlib import Path

from _fetch import download, extract, run

HERE = Path(__file__).resolve().parent
ARCHIVES = [  # (file name, md5)
    ("VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
    ("VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f"),
]
URL_BASES = ["http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
             "https://pjreddie.com/media/files/"]  # official site, then a long-lived mirror


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=HERE / "data",
                        help="folder to extract into (default: datasets/data)")
    parser.add_argument("--url-base", action="append",
                        help="download from this base URL instead (may repeat)")
    args = parser.parse_args()
    bases = args.url_base or URL_BASES
    for name, md5 in ARCHIVES:
        urls = [base.rstrip("/") + "/" + name for base in bases]
        archive = download(urls, args.dest / "downloads" / name, md5)
        extract(archive, args.dest)
    print(f"VOC2007 ready in {args.dest / 'VOCdevkit' / 'VOC2007'}")


if __name__ == "__main__":
    run(main)
