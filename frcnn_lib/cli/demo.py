"""``frcnn demo``: the main job, train and evaluate on the embedded shapes data and write a
report (``cli/report.py``)."""
from frcnn_lib.cli.common import nonnegative_int, positive
from frcnn_lib.training.precision import PRECISIONS
from frcnn_lib.training.presets import SHAPES_PRESETS


def add_parser(subparsers):
    d = subparsers.add_parser("demo", help="the main job: train and evaluate on the embedded shapes data",
                              description="Train a preset on the embedded shapes data (the main job's "
                              "shapes_224 by default), evaluate VOC07 and VOC2010+ mAP@0.5 on 300 held-out "
                              "shapes images, and write OUT/report.md with loss curves and detections.")
    d.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    d.add_argument("--preset", choices=SHAPES_PRESETS, default="shapes_224",
                   help="shapes_224 (default): the main job's recipe, 4000 steps at 224 px; "
                   "shapes_cpu: the course's detector, 8000 steps at 160 px")
    d.add_argument("--epochs", type=positive(int), help="number of epochs (default: the preset's)")
    d.add_argument("--train-images", type=positive(int), help="number of generated training images")
    d.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seeds the weights, the data order and the sampling (default 0)")
    d.add_argument("--precision", choices=PRECISIONS, help="float32 (default), mixed_float16 or "
                   "mixed_bfloat16 (see frcnn train --help)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    return d


def run(args, session):
    from frcnn_lib.cli.report import DemoSettings, run_demo
    settings = DemoSettings(out=args.out, preset=args.preset, epochs=args.epochs, train_images=args.train_images,
                            seed=args.seed, precision=args.precision)
    run_demo(settings, verbose=0 if args.quiet else 1, announce=session.result)
