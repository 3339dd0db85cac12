"""The ``frcnn`` command line: ``train``, ``evaluate``, ``predict``, ``export``, ``anchors``,
``demo`` and ``serve``.

Results (metrics JSON, reports, "written to" lines) go to stdout; progress, logs and errors
go to stderr, so that ``frcnn evaluate ... | python -m json.tool`` works without ``--quiet``.
Bad input ends with a one-line ``frcnn: error: ...`` on stderr and exit status 2; nothing
prints a traceback for a user's mistake, and a failed command removes the (empty) output
folders it created.  Every command takes ``--quiet`` and ``--verbose``
(TensorFlow's native log, hidden by default: see quiet.py); the console script runs this
module without loading TensorFlow until a command needs it (``_frcnn_console.py``).
"""
import argparse
import contextlib
import glob
import json
import os
import sys
import time

from frcnn_lib import __version__
from frcnn_lib.training.precision import PRECISIONS, policy_scope, precision_of

DATA_HELP = ("dataset spec: 'shapes', 'shapes:SPLIT' (train, val, test), "
             "'voc:VOCDEVKIT/VOC2007:SPLIT' or 'coco:ANNOTATIONS.json:IMAGE_DIR'")


CLASSES_HELP = ("voc: data only: the class names in label order, 'a,b,c' or a file with one "
                "name a line (default: the sorted unique object names of the split's annotations)")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format (``frcnn: error: ...``, exit 2)."""

    def error(self, message):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{command}: " if command else ""
        self.exit(2, f"frcnn: error: {where}{message} (see '{self.prog} --help')\n")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'number' if kind is float else 'whole number'}, "
                                             f"got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive finite value, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _fraction(text):
    """A threshold or IoU: a finite number in [0, 1] (nan, inf, -0.1 and 1.5 are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # False for nan too
        raise argparse.ArgumentTypeError(f"expected a finite number in [0, 1], got {text!r}")
    return value


_fraction.__name__ = "fraction"


def _is_fraction_setting(key):
    """FasterRCNN arguments that are IoUs, score thresholds or fractions: in [0, 1]."""
    return key.endswith(("_iou", "_iou_low", "_iou_high", "_threshold", "_fraction"))


def _parser():
    p = _Parser(prog="frcnn", description="Faster R-CNN (Ren et al. 2015): train, "
                "evaluate, predict and export detectors built with frcnn_lib. Results go to "
                "stdout; progress, logs and errors to stderr (so 'frcnn evaluate ... | python -m "
                "json.tool' works). A failed command removes the empty output folders it created.")
    p.add_argument("--version", action="version", version=f"frcnn {__version__}",
                   help="print 'frcnn VERSION' and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a detector and write a run folder",
                       description="Train a FasterRCNN on a dataset; writes OUT/model.keras, "
                       "checkpoints, history.csv and TensorBoard logs.")
    t.add_argument("--data", help=DATA_HELP + " (default: the preset's)")
    t.add_argument("--val-data", help="dataset spec evaluated (VOC07 mAP) after each epoch")
    t.add_argument("--preset", default="shapes_cpu", help="named configuration: shapes_cpu, "
                   "voc_vgg16 or coco_resnet50 (default: shapes_cpu); the last two start from "
                   "ImageNet weights, downloaded by keras.applications to ~/.keras/models (offline: "
                   "the error names the files to put there)")
    t.add_argument("--out", required=True, help="run folder to write (created if missing; "
                   "removed again if the command fails while it is still empty)")
    t.add_argument("--epochs", type=_positive(int), help="number of epochs (default: the preset's)")
    t.add_argument("--batch-size", type=_positive(int), help="images per step (default: the preset's)")
    t.add_argument("--learning-rate", type=_positive(float), help="initial learning rate (default: the preset's)")
    t.add_argument("--train-images", type=_positive(int), help="shapes only: number of generated training images")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a FasterRCNN argument, VALUE in JSON (e.g. --set rpn_nms_iou=0.6)")
    t.add_argument("--classes", help=CLASSES_HELP)
    t.add_argument("--init-model", metavar="M.keras", help="start from the weights of a trained "
                   "model (same backbone): all of them for the same classes, all but the R-CNN "
                   "predictor's class and box layers for a different number of classes")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints (weights, "
                   "optimizer state, epoch and step) at the exact step, with the same data order")
    t.add_argument("--checkpoint-every-steps", type=_positive(int), metavar="N",
                   help="also checkpoint every N optimizer steps within an epoch (default: at epoch ends only)")
    t.add_argument("--checkpoint-every-minutes", type=_positive(float), metavar="M",
                   help="also checkpoint when M minutes have passed since the last checkpoint")
    t.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                   help="devices to train on: default (one), mirrored (all local GPUs) or "
                   "multiworker (the machines in the TF_CONFIG environment variable, each running "
                   "this command; worker 0 writes OUT, which all must see to --resume; "
                   "--batch-size is the global batch)")
    t.add_argument("--precision", choices=PRECISIONS, help="float32 (default), mixed_float16 "
                   "(NVIDIA GPUs) or mixed_bfloat16 (TPUs, recent GPUs, CPUs with AMX or "
                   "AVX512-BF16); a resumed run keeps its checkpoint's")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="mAP of a saved model on a dataset",
                       description="Evaluate a .keras model; prints and optionally writes the metrics.")
    e.add_argument("--model", required=True, help="a .keras file written by 'frcnn train'")
    e.add_argument("--data", required=True, help=DATA_HELP)
    e.add_argument("--metric", choices=("voc07", "voc2010", "coco"), default="voc07",
                   help="VOC07 11-point AP, VOC2010+ area AP, or the twelve COCO numbers (default voc07)")
    e.add_argument("--iou", type=_fraction, default=0.5,
                   help="IoU threshold of the VOC metrics, in [0, 1] (default 0.5)")
    e.add_argument("--classes", help=CLASSES_HELP + "; default: the model's own classes")
    e.add_argument("--out", help="JSON file to write the metrics to")
    e.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("predict", help="detect objects in image files, folders or glob patterns",
                       description="Run a model on images; writes OUT/detections.json (per image: "
                       "its path, image_id, width and height in pixels, boxes x1,y1,x2,y2 in its "
                       "pixels rounded to 2 decimals, scores rounded to 4, category_ids, names, "
                       "model_labels) and one annotated PNG per image, at the image's own "
                       "resolution (or --max-size).")
    r.add_argument("--model", required=True, help="a .keras file written by 'frcnn train'")
    r.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders (every "
                   f"{'/'.join(IMAGE_EXTENSIONS)} file directly inside, sorted by name) or quoted "
                   "glob patterns such as 'photos/*.jpg' or 'data/**/*.png' (expanded by frcnn, "
                   "sorted); image_id is the position (from 0) in the resulting list")
    r.add_argument("--out", required=True, help="folder for detections.json and annotated images")
    r.add_argument("--coco-results", metavar="FILE", help="also write the detections as a COCO "
                   "results JSON: [{image_id, category_id, bbox: [x, y, width, height], score}]; "
                   "image_id is the image's position (from 0) in the input list, category_id "
                   "the dataset's category id when the model knows them (trained on COCO data), "
                   "else its label 1..K")
    r.add_argument("--score-threshold", type=_fraction, default=0.5,
                   help="keep detections scoring at least this, in [0, 1] (default 0.5)")
    r.add_argument("--class-names", help="comma-separated names of classes 1..K (default: the "
                   "names the model was trained with, if it has them)")
    r.add_argument("--max-size", type=_positive(int), metavar="PIXELS",
                   help="scale pictures down so that their longer side is at most this "
                   "(default: each image at its own resolution)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    x = sub.add_parser("export", help="export a SavedModel for serving",
                       description="Write a TensorFlow SavedModel whose 'serve' signature maps float "
                       "images (B, H, W, 3) in 0..255 to padded detections.")
    x.add_argument("--model", required=True, help="a .keras file written by 'frcnn train'")
    x.add_argument("--out", required=True,
                   help="SavedModel folder to write (a .tflite / .onnx file with --format tflite / onnx)")
    x.add_argument("--format", choices=("saved_model", "tflite", "onnx"), default="saved_model",
                   help="saved_model (default); tflite: a float32 TFLite file, builtin ops only; "
                        "onnx: an ONNX file (opset 17) through tf2onnx (the onnx extra)")

    a = sub.add_parser("anchors", help="anchor scales, ratios and image size that fit a dataset's boxes",
                       description="Report the box size and aspect distributions after the "
                       "preset's resize, the best-anchor IoU coverage of the current anchors, and "
                       "proposed anchor_scales / anchor_ratios / image size with their coverage; "
                       "ends with the --set line for 'frcnn train'.")
    a.add_argument("--data", help=DATA_HELP + " (default: the preset's)")
    a.add_argument("--preset", default="shapes_cpu", help="the configuration whose anchors, "
                   "image size and backbone stride are analysed (default: shapes_cpu)")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a FasterRCNN argument first, as in 'frcnn train'")
    a.add_argument("--classes", help=CLASSES_HELP)
    a.add_argument("--max-images", type=_positive(int), default=2000,
                   help="analyse a seeded random subset of at most this many images (default 2000)")
    a.add_argument("--train-images", type=_positive(int), help="shapes only: number of generated images")
    a.add_argument("--quiet", action="store_true", help="no timing line at the end")

    d = sub.add_parser("demo", help="the main job: train and evaluate on the embedded shapes data",
                       description="Train the shapes_cpu preset, evaluate VOC07 mAP@0.5 on held-out "
                       "shapes images, and write OUT/report.md with loss curves and detections.")
    d.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    d.add_argument("--epochs", type=_positive(int), help="number of epochs (default: the preset's)")
    d.add_argument("--train-images", type=_positive(int), help="number of generated training images")
    d.add_argument("--precision", choices=PRECISIONS, help="float32 (default), mixed_float16 or "
                   "mixed_bfloat16 (see frcnn train --help)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    # serve: frcnn_lib/serve (the optional extra frcnn_lib[serve]); see docs/serve.md.
    v = sub.add_parser("serve", help="a web page and a JSON API for a saved model",
                       description="Serve a .keras model: a web page at / (upload or drop images, "
                       "boxes drawn), POST /v1/detect and /v1/detect/batch (JSON), GET /healthz and "
                       "the OpenAPI description at /openapi.json (/docs). Needs the serve extra: "
                       "pip install 'frcnn_lib[serve]'.")
    v.add_argument("--model", required=True, help="a .keras file written by 'frcnn train' or 'frcnn demo'")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this "
                   "machine only; 0.0.0.0 exposes the server to the network)")
    v.add_argument("--port", type=_positive(int), default=8000, help="TCP port (default 8000)")
    v.add_argument("--max-upload-mb", type=_positive(float), default=10.0,
                   help="largest request body in MB, batch included; larger gets 413 (default 10)")
    v.add_argument("--max-megapixels", type=_positive(float), default=25.0,
                   help="largest image in megapixels, checked before decoding; larger gets 413 (default 25)")
    v.add_argument("--queue-size", type=_positive(int), default=16,
                   help="images allowed to wait for the model; beyond, 503 with Retry-After (default 16)")
    v.add_argument("--max-batch", type=_positive(int), default=8,
                   help="most images per model call; 1 turns batching off (default 8)")
    v.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a short batch waits for more requests, in ms (default 0: "
                   "group only what is already queued)")
    v.add_argument("--quiet", action="store_true", help="no access log")
    return p


# Where results go: the real stdout while main() sends everything else printed (progress,
# Keras' bars, logs) to stderr.  Set by main(); print() to stdout outside main().
_RESULTS = None
# Folders this command created (outermost first): removed again, if still empty, on failure.
_CREATED = []


def _result(text):
    """Print a result (JSON, a report, a "written to" line) on stdout; all else goes to stderr."""
    print(text, file=_RESULTS or sys.stdout, flush=True)


def _missing_parents(path):
    """The folders ``os.makedirs(path)`` would create, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while path and not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def _remove_created_folders():
    """After a failure: remove the folders this command created, deepest first, while empty
    (a folder that existed before, or holds anything, e.g. checkpoints, is kept)."""
    for folder in reversed(_CREATED):
        try:
            os.rmdir(folder)
        except OSError:
            pass
    _CREATED.clear()


def _writable_folder(path, what="--out"):
    from frcnn_lib.runtime.errors import FrcnnError
    missing = _missing_parents(path)
    try:
        try:
            os.makedirs(path, exist_ok=True)
        finally:  # also the parents made before a failure
            _CREATED.extend(m for m in missing if os.path.isdir(m) and m not in _CREATED)
        probe = os.path.join(path, ".frcnn-write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise FrcnnError(f"{what} {path}: cannot write there ({err.strerror or err})") from err
    return path


def _existing_file(path, what):
    """Fail early (before TensorFlow loads) on an input file that is not there."""
    from frcnn_lib.runtime.errors import FrcnnError
    if not os.path.isfile(path):
        state = "is a folder" if os.path.isdir(path) else "does not exist"
        raise FrcnnError(f"{what} {path}: {state}; expected a file")
    return path


def _writable_file(path, what="--out"):
    """Check before long work that ``path`` can be written (its folder is created)."""
    from frcnn_lib.runtime.errors import FrcnnError
    if os.path.isdir(path):
        raise FrcnnError(f"{what} {path}: is a folder; expected a file name")
    _writable_folder(os.path.dirname(os.path.abspath(path)), f"{what} {path}: folder")
    return path


def _check_overrides(overrides, defaults):
    """``--set`` values against the FasterRCNN arguments: known key, value of the right type."""
    import difflib
    import math
    from frcnn_lib.runtime.errors import FrcnnError

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for key, value in overrides.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FrcnnError(f"--set {key}: unknown FasterRCNN argument{hint}; see "
                             f"frcnn_lib.model.DEFAULTS for the accepted ones")
        default = defaults[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = number(value) and float(value).is_integer(), "a whole number"
            if ok:
                overrides[key] = int(value)
        elif isinstance(default, float) and _is_fraction_setting(key):
            ok, expected = number(value) and 0 <= value <= 1, "a number in [0, 1]"
        elif isinstance(default, float):
            ok, expected = number(value), "a finite number"
        elif isinstance(default, (tuple, list)):
            ok = isinstance(value, list) and bool(value) and all(number(v) for v in value)
            expected = "a JSON list of numbers, e.g. [16, 32]"
        elif default is None or isinstance(default, str):
            ok, expected = value is None or isinstance(value, str), "a string"
        else:
            ok, expected = True, ""
        if not ok:
            raise FrcnnError(f"--set {key}={json.dumps(value)}: expected {expected}")
    return overrides


def _overrides(pairs):
    from frcnn_lib.runtime.errors import FrcnnError
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FrcnnError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _load_data(spec, classes=None, **kwargs):
    """``datasets.load(spec)``; ``classes`` (a list, or "auto") names a VOC folder's classes."""
    from frcnn_lib import datasets
    from frcnn_lib.runtime.errors import FrcnnError
    if spec.strip().startswith("voc:"):
        kwargs["class_names"] = classes or "auto"
    elif classes not in (None, "auto"):
        raise FrcnnError(f"--classes: only for voc: data; {spec} names its own classes")
    return datasets.load(spec, **kwargs)


def cmd_train(args):
    from frcnn_lib.runtime.errors import FrcnnError
    from frcnn_lib.training.presets import get_preset

    # Everything that can be checked without TensorFlow first, so that mistakes fail fast.
    preset = get_preset(args.preset)
    train = preset["train"]
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                       ("learning_rate", args.learning_rate), ("train_images", args.train_images)):
        if value is not None:
            train[key] = value
    overrides = _overrides(args.set)
    out = _writable_folder(args.out)
    checkpoint_folder = os.path.join(out, "checkpoints")
    if args.resume:
        for name in ("last.keras", "state.json"):
            _existing_file(os.path.join(checkpoint_folder, name), "--resume: checkpoint")
    if args.init_model:
        _existing_file(args.init_model, "--init-model")
        if args.resume:
            raise FrcnnError("--init-model and --resume: choose one (a resumed run has its weights)")
    from frcnn_lib.datasets.classes import data_classes, parse_class_list
    classes = parse_class_list(args.classes) if args.classes else None
    from frcnn_lib.training import distribute
    # Before any other TensorFlow work (collective ops' rule); None: one device.
    strategy = None if args.strategy == "default" else distribute.make_strategy(args.strategy)
    spec = args.data or preset["data"]
    shapes_kw = {"num_images": train.get("train_images")} if spec.startswith("shapes") else {}
    data = _load_data(spec, classes, **shapes_kw)
    # Validation data is read with the training classes, so that label k means one thing.
    val = _load_data(args.val_data, data.class_names if args.val_data.startswith("voc:") else None) \
        if args.val_data else None
    if val is not None and list(val.class_names) != list(data.class_names):
        raise FrcnnError(f"--val-data {args.val_data}: classes {val.class_names} differ from the "
                         f"training data's {data.class_names}")

    from frcnn_lib.model import DEFAULTS

    overrides = _check_overrides(overrides, DEFAULTS)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, distribute.run_folder(out, strategy) as run_out:
        _train_in_scope(args, preset, train, overrides, data, val, spec, out, run_out, strategy)
    _result(f"model written to {os.path.join(out, 'model.keras')}")


def _train_in_scope(args, preset, train, overrides, data, val, spec, out, run_out, strategy):
    """The model built (or loaded) and trained inside ``strategy.scope()`` (if any);
    ``run_out`` is ``out`` on the chief, a temporary folder on the other workers."""
    from frcnn_lib.training import checkpoints
    from frcnn_lib.training import runs as training
    from frcnn_lib.datasets.classes import data_classes
    from frcnn_lib.runtime.errors import FrcnnError, MissingWeightsError
    from frcnn_lib.model import DEFAULTS, FasterRCNN

    checkpoint_folder = os.path.join(out, "checkpoints")
    state = None
    if args.resume:
        model, state = checkpoints.load_checkpoint(checkpoint_folder)
        config = model.get_config()
        for key, value in overrides.items():
            if json.dumps(config[key]) != json.dumps(list(value) if isinstance(value, tuple) else value):
                raise FrcnnError(f"--set {key}={json.dumps(value)}: the checkpoint in "
                                 f"{checkpoint_folder} has {key}={json.dumps(config[key])}; a "
                                 f"resumed run keeps its model (drop --set or start a new --out)")
        if model.num_classes != data.num_classes:
            raise FrcnnError(f"--data {spec}: has {data.num_classes} classes but the checkpoint "
                             f"in {checkpoint_folder} was trained for {model.num_classes}")
        if model.class_names is not None and list(model.class_names) != list(data.class_names):
            raise FrcnnError(f"--data {spec}: classes {data.class_names} differ from the "
                             f"checkpoint's {list(model.class_names)}")
        if args.precision and args.precision != precision_of(model):
            raise FrcnnError(f"--precision {args.precision}: the checkpoint in {checkpoint_folder} "
                             f"was trained in {precision_of(model)}; a resumed run keeps its "
                             f"precision (drop --precision or start a new --out)")
        into = f", {state['epoch_step']} steps into epoch {state['epoch'] + 1}" if state["epoch_step"] else ""
        print(f"resuming from epoch {state['epoch']} (step {state['step']}{into})")
    else:
        import keras
        # Seeded weight initialisation: a run is repeatable for a seed (and a resumed run can
        # be compared with an uninterrupted one).
        keras.utils.set_random_seed(int({**DEFAULTS, **preset["model"], **overrides}["seed"]))
        try:
            with policy_scope(args.precision):
                model = FasterRCNN(data.num_classes, **data_classes(data), **{**preset["model"], **overrides})
        except MissingWeightsError as err:  # offline: which file to put where, not "rejected"
            where = "--set backbone_weights" if "backbone_weights" in overrides else f"--preset {args.preset}"
            raise FrcnnError(f"{where}: {err}") from None
        except (ValueError, TypeError) as err:  # FrcnnError included
            raise FrcnnError(f"--set / --preset {args.preset}: the model rejected these "
                             f"settings: {err}") from None
        if args.init_model:
            from frcnn_lib.training.finetune import init_from
            print(init_from(model, checkpoints.load_model(args.init_model, compile=False)))
    training.fit(model, data, run_out, train["epochs"], train["batch_size"], train, val, state,
                 verbose=0 if args.quiet else 1, checkpoint_every_steps=args.checkpoint_every_steps,
                 checkpoint_every_minutes=args.checkpoint_every_minutes, strategy=strategy)


def cmd_evaluate(args):
    from frcnn_lib.datasets.classes import parse_class_list, saved_classes
    from frcnn_lib.runtime.errors import FrcnnError

    _existing_file(args.model, "--model")
    if args.out:
        _writable_file(args.out)
    model_names, model_ids = saved_classes(args.model)
    if args.classes:
        classes = parse_class_list(args.classes)
    else:  # a VOC folder is read with the model's classes (its label order)
        classes = model_names if args.data.strip().startswith("voc:") else None
    data = _load_data(args.data, classes)
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
    _result(json.dumps(metrics, indent=2, default=float))
    if args.out:
        training.write_json(args.out, metrics)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _image_list(arguments):
    """``frcnn predict``'s IMAGE arguments as a list of files: a file stays (in the order
    given), a folder gives its image files (by extension, sorted), a glob pattern its
    matching image files (sorted; ``**`` recurses); a folder or pattern that gives none is
    a FrcnnError."""
    from frcnn_lib.runtime.errors import FrcnnError

    def images(paths):
        return sorted(p for p in paths if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS))

    files = []
    for argument in arguments:
        if os.path.isdir(argument):
            found = images(os.path.join(argument, name) for name in os.listdir(argument))
            if not found:
                raise FrcnnError(f"image folder {argument}: holds no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        elif glob.has_magic(argument) and not os.path.exists(argument):
            found = images(glob.glob(argument, recursive=True))
            if not found:
                raise FrcnnError(f"image pattern {argument!r}: matches no image file "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        else:
            found = [_existing_file(argument, "image")]
        files.extend(found)
    return files


def cmd_predict(args):
    from frcnn_lib.runtime.errors import FrcnnError

    _existing_file(args.model, "--model")
    paths = _image_list(args.images)
    if args.coco_results:
        _writable_file(args.coco_results, "--coco-results")
    out = _writable_folder(args.out)

    from frcnn_lib.training import checkpoints
    from frcnn_lib.training import runs as training
    from frcnn_lib.datasets.imageio import read_image
    from frcnn_lib.runtime.progress import progress_bar
    from frcnn_lib.evaluation.visualize import save_detections

    model = checkpoints.load_model(args.model, compile=False)
    names = args.class_names.split(",") if args.class_names else model.class_names
    if names is not None and len(names) != model.num_classes:
        raise FrcnnError(f"--class-names: got {len(names)} names, the model has {model.num_classes} classes")
    results = []
    used = set()
    for image_id, path in enumerate(progress_bar(paths, "predict", enabled=not args.quiet)):
        image = read_image(path)
        det = model.detect(image)
        keep = det["scores"] >= args.score_threshold
        det = {k: v[keep] for k, v in det.items()}
        stem = os.path.splitext(os.path.basename(path))[0]
        name, n = stem, 1
        while name in used:  # a/x.jpg and b/x.png: one picture each
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        save_detections(image, det, os.path.join(out, f"{name}.png"), class_names=names,
                        max_size=args.max_size)
        results.append(_prediction_json(path, image_id, image.shape, det, names))
    training.write_json(os.path.join(out, "detections.json"), results)
    written = f" and {args.coco_results}" if args.coco_results else ""
    if args.coco_results:
        training.write_json(args.coco_results, _coco_results(results))
    _result(f"{sum(len(r['boxes']) for r in results)} detections in {len(results)} images -> "
            f"{out}{written}")


def _prediction_json(path, image_id, shape, det, names):
    """One image's detections: its ``image_id`` (position in the input list) and size,
    boxes (``xyxy`` pixels, 2 decimals) and scores (4 decimals), the dataset's
    ``category_ids`` (the model's own labels ``1..K`` when it knows no ids), ``names`` (or
    null), and the model's ``model_labels``."""
    import numpy as np

    labels = det["labels"].astype(int)
    ids = det.get("category_ids", labels)
    # float64 before rounding: float32 values rounded to 2 decimals print as 12.350000381...
    return {"image": path, "image_id": image_id, "width": int(shape[1]), "height": int(shape[0]),
            "boxes": np.asarray(det["boxes"], np.float64).round(2).tolist(),
            "scores": np.asarray(det["scores"], np.float64).round(4).tolist(),
            "category_ids": [int(i) for i in ids],
            "names": [names[i - 1] for i in labels] if names is not None else None,
            "model_labels": labels.tolist()}


def _coco_results(results):
    """detections.json entries as COCO results (``loadRes``' format): one dict per box with
    ``bbox`` ``[x, y, width, height]``."""
    return [{"image_id": r["image_id"], "category_id": c,
             "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": s}
            for r in results for (x1, y1, x2, y2), s, c in zip(r["boxes"], r["scores"], r["category_ids"])]


def cmd_export(args):
    from frcnn_lib.runtime.errors import FrcnnError

    _existing_file(args.model, "--model")
    if args.format in _FILE_EXPORTS:
        return _export_file(args)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FrcnnError(f"--out {args.out}: is a file; expected a new folder")
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise FrcnnError(f"--out {args.out}: folder exists and is not empty; choose a new one")
    parent = os.path.dirname(os.path.abspath(args.out))
    _writable_folder(parent, f"--out {args.out}: parent folder")

    from frcnn_lib.training import checkpoints

    model = checkpoints.load_model(args.model, compile=False)
    if not args.quiet:
        print(f"exporting {args.model} (tracing the serving graph) ...", flush=True)
    model.export(args.out, verbose=False)
    _result(f"SavedModel written to {args.out} (signature 'serve': images (B, H, W, 3) float32 -> "
          f"boxes, scores, labels, num_detections)")


# --format -> (name, what the converter does, the file's input)
_FILE_EXPORTS = {
    "tflite": ("TFLite", "tracing and converting", "signature 'serve': images (1, H, W, 3)"),
    "onnx": ("ONNX", "tracing, then converting", "input 'images' (B, H, W, 3)"),
}


def _export_file(args):
    """--format tflite / onnx: one file, written when complete."""
    from frcnn_lib.training import checkpoints

    name, stages, inputs = _FILE_EXPORTS[args.format]
    _writable_file(args.out)
    model = checkpoints.load_model(args.model, compile=False)
    if not args.quiet:
        print(f"exporting {args.model} to {name} ({stages}) ...", flush=True)
    size = model.export(args.out, format=args.format)
    _result(f"{name} model written to {args.out} ({size / 1e6:.1f} MB; {inputs} float32 -> "
          f"boxes, scores, labels, num_detections)")


def cmd_anchors(args):
    from frcnn_lib.datasets.classes import parse_class_list
    from frcnn_lib.training.presets import get_preset

    preset = get_preset(args.preset)
    overrides = _overrides(args.set)
    spec = args.data or preset["data"]
    shapes_kw = {"num_images": args.train_images} if args.train_images and spec.startswith("shapes") else {}
    data = _load_data(spec, parse_class_list(args.classes) if args.classes else None, **shapes_kw)

    from frcnn_lib.training.anchor_fit import analyse
    from frcnn_lib.backbones import STRIDES
    from frcnn_lib.model import DEFAULTS

    s = {**DEFAULTS, **preset["model"], **_check_overrides(overrides, DEFAULTS)}
    if s["backbone"] not in STRIDES:
        from frcnn_lib.runtime.errors import FrcnnError
        raise FrcnnError(f"--set backbone={s['backbone']!r}: expected one of {', '.join(STRIDES)}")
    report = analyse(data, s["anchor_scales"], s["anchor_ratios"], STRIDES[s["backbone"]],
                     int(s["image_min_side"]), int(s["image_max_side"]), max_images=args.max_images)
    _result(report)


def cmd_demo(args):
    from frcnn_lib.cli.report import run_demo
    run_demo(args.out, epochs=args.epochs, train_images=args.train_images, precision=args.precision,
             verbose=0 if args.quiet else 1, announce=_result)


def cmd_serve(args):
    from frcnn_lib.runtime.errors import FrcnnError

    _existing_file(args.model, "--model")
    if not 0 <= args.max_wait_ms <= 1000:
        raise FrcnnError(f"--max-wait-ms {args.max_wait_ms}: expected 0 to 1000")
    if args.port > 65535:
        raise FrcnnError(f"--port {args.port}: expected 1 to 65535")
    try:  # FastAPI and uvicorn are an optional extra: imported only by this command
        from frcnn_lib.serve import ServeSettings, serve
    except ImportError as err:
        raise FrcnnError(f"frcnn serve needs the serve extra ({err.name} is missing): "
                         f"pip install 'frcnn_lib[serve]'") from None
    settings = ServeSettings(max_upload_mb=args.max_upload_mb, max_megapixels=args.max_megapixels,
                             queue_size=args.queue_size, max_batch=args.max_batch,
                             max_wait_ms=args.max_wait_ms)
    serve(args.model, args.host, args.port, settings, access_log=not args.quiet, announce=_result)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "anchors": cmd_anchors, "demo": cmd_demo,
            "serve": cmd_serve}


def _add_output_options(parser):
    """``--quiet`` and ``--verbose`` on every command, also on commands added later."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices.values():
        if "--quiet" not in command._option_string_actions:
            command.add_argument("--quiet", action="store_true", help="print only results and errors")
        command.add_argument("--verbose", action="store_true", help="also show TensorFlow's native "
                             "log lines (hidden by default; or set FRCNN_VERBOSE=1)")
    return parser


def main(argv=None):
    global _RESULTS
    args = _add_output_options(_parser()).parse_args(argv)
    _CREATED.clear()
    _RESULTS = sys.stdout
    try:
        # Everything printed while the command runs (progress, Keras' bars, logs) goes to
        # stderr; results go to stdout through _result().
        with contextlib.redirect_stdout(sys.stderr):
            code = _run(args)
    except BaseException:
        _remove_created_folders()
        raise
    finally:
        _RESULTS = None
    if code != 0:
        _remove_created_folders()
    _CREATED.clear()
    return code


def _run(args):
    from frcnn_lib.runtime import quiet
    from frcnn_lib.runtime.backend import require_tensorflow_backend
    from frcnn_lib.runtime.errors import FrcnnError
    if not quiet.verbose_requested(args.verbose):
        quiet.silence_tensorflow()  # before any command imports TensorFlow
    start = time.perf_counter()
    try:
        require_tensorflow_backend()
        COMMANDS[args.command](args)
    except FrcnnError as err:
        print(f"frcnn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("frcnn: interrupted", file=sys.stderr)
        interrupted = True
    else:
        interrupted = False
    if interrupted:
        # The traceback is gone now: free an interrupted tf.data pipeline (held by a Keras
        # reference cycle) before exit, while its threads can still finish (see input_checks).
        import gc
        gc.collect()
        return 130
    if not getattr(args, "quiet", False):
        print(f"done in {time.perf_counter() - start:.1f} s")
    return 0

