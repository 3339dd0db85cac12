"""``frcnn anchors``: anchor scales, ratios and image size that fit a dataset's boxes
(``training/anchor_fit.py``)."""
from frcnn_lib.cli.common import CLASSES_HELP, DATA_HELP, check_overrides, load_data, \
    parse_overrides, positive


def add_parser(subparsers):
    a = subparsers.add_parser("anchors", help="anchor scales, ratios and image size that fit a dataset's boxes",
                              description="Report the box size and aspect distributions after the "
                              "preset's resize, the best-anchor IoU coverage of the current anchors, and "
                              "proposed anchor_scales / anchor_ratios / image size with their coverage at IoU 0.5 and 0.7; "
                              "candidates are ranked by the mean of the two (0.7 is the RPN's positive threshold), "
                              "the smallest image within 0.01 of the best score winning; "
                              "ends with the --set line for 'frcnn train'.")
    a.add_argument("--data", help=DATA_HELP + " (default: the preset's)")
    a.add_argument("--preset", default="shapes_cpu", help="the configuration whose anchors, "
                   "image size and backbone stride are analysed (default: shapes_cpu)")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a FasterRCNN argument first, as in 'frcnn train'")
    a.add_argument("--classes", help=CLASSES_HELP)
    a.add_argument("--max-images", type=positive(int), default=2000,
                   help="analyse a seeded random subset of at most this many images (default 2000)")
    a.add_argument("--train-images", type=positive(int), help="shapes only: number of generated images")
    a.add_argument("--quiet", action="store_true", help="no timing line at the end")
    return a


def run(args, session):
    from frcnn_lib.datasets.classes import parse_class_list
    from frcnn_lib.training.presets import get_preset

    preset = get_preset(args.preset)
    overrides = parse_overrides(args.set)
    spec = args.data or preset["data"]
    shapes_kw = {"num_images": args.train_images} if args.train_images and spec.startswith("shapes") else {}
    data = load_data(spec, parse_class_list(args.classes) if args.classes else None, **shapes_kw)

    from frcnn_lib.training.anchor_fit import analyse
    from frcnn_lib.backbones import STRIDES
    from frcnn_lib.model import DEFAULTS

    s = {**DEFAULTS, **preset["model"], **check_overrides(overrides, DEFAULTS)}
    if s["backbone"] not in STRIDES:
        from frcnn_lib.runtime.errors import FrcnnError
        raise FrcnnError(f"--set backbone={s['backbone']!r}: expected one of {', '.join(STRIDES)}")
    report = analyse(data, s["anchor_scales"], s["anchor_ratios"], STRIDES[s["backbone"]],
                     int(s["image_min_side"]), int(s["image_max_side"]), max_images=args.max_images)
    session.result(report)
