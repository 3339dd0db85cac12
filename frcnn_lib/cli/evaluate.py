"""``frcnn evaluate``: the mAP (VOC) or the twelve COCO numbers of a saved model on a dataset,
as JSON on stdout."""
import json

from frcnn_lib.cli.common import CLASSES_HELP, DATA_HELP, existing_file, fraction, load_data


def add_parser(subparsers):
    e = subparsers.add_parser("evaluate", help="mAP of a saved model on a dataset",
                              description="Evaluate a .keras model; prints and optionally writes the metrics.")
    e.add_argument("--model", required=True, help="a .keras file written by 'frcnn train'")
    e.add_argument("--data", required=True, help=DATA_HELP)
    e.add_argument("--metric", choices=("voc07", "voc2010", "coco"), default="voc07",
                   help="VOC07 11-point AP, VOC2010+ area AP, or the twelve COCO numbers (default voc07)")
    e.add_argument("--iou", type=fraction, default=0.5,
                   help="IoU threshold of the VOC metrics, in [0, 1] (default 0.5)")
    e.add_argument("--classes", help=CLASSES_HELP + "; default: the model's own classes")
    e.add_argument("--out", help="JSON file to write the metrics to")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    return e


def run(args, session):
    from frcnn_lib.datasets.classes import parse_class_list, saved_classes
    from frcnn_lib.runtime.errors import FrcnnError

    existing_file(args.model, "--model")
    if args.out:
        session.writable_file(args.out)
    model_names, model_ids = saved_classes(args.model)
    if args.classes:
        classes = parse_class_list(args.classes)
    else:  # the data is read with the model's classes (its label order, its subset)
        classes = model_names
    data = load_data(args.data, classes)
    if model_names is not None and list(data.class_names) != list(model_names):
        raise FrcnnError(f"--data {args.data}: classes {data.class_names} differ from the "
                         f"model's {model_names}; evaluate on data with the model's classes")
    data_ids = data.label_to_category_id
    if model_ids is not None and data_ids is not None and \
            [data_ids[k] for k in range(1, data.num_classes + 1)] != list(model_ids):
        raise FrcnnError(f"--data {args.data}: category ids differ from the model's {model_ids}")

    from frcnn_lib.training import checkpoints
    from frcnn_lib.training import runs as training
    from frcnn_lib.evaluation import evaluate_coco

    model = checkpoints.load_model(args.model, compile=False)
    if args.metric == "coco":
        detections = training.detect_dataset(model, data, progress=not args.quiet)
        metrics = evaluate_coco(detections, data.ground_truths(),
                                label_to_category_id=data.label_to_category_id)
    else:
        metrics, _, _ = training.evaluate(model, data, args.metric == "voc07", args.iou,
                                          progress=not args.quiet)
        metrics = {"mAP": metrics["mAP"], "AP": dict(training.class_ap_table(metrics, data.class_names))}
    session.result(json.dumps(metrics, indent=2, default=float))
    if args.out:
        training.write_json(args.out, metrics)
