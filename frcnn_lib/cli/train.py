"""``frcnn train``: train a detector and write a run folder (``training/runs.py`` says what
it holds)."""
import argparse
import contextlib
import json
import math
import os

from frcnn_lib.cli.common import CLASSES_HELP, DATA_HELP, check_overrides, existing_file, \
    fraction, load_data, parse_overrides, positive
from frcnn_lib.training.precision import PRECISIONS, policy_scope, precision_of


def add_parser(subparsers):
    t = subparsers.add_parser("train", help="train a detector and write a run folder",
                              description="Train a FasterRCNN on a dataset; writes OUT/model.keras, "
                              "checkpoints, history.csv and TensorBoard logs.")
    t.add_argument("--data", help=DATA_HELP + " (default: the preset's)")
    t.add_argument("--val-data", help="dataset spec evaluated (VOC07 mAP) after each epoch")
    t.add_argument("--preset", help="named configuration: shapes_cpu, "
                   "voc_vgg16 or coco_resnet50 (default: shapes_cpu); the last two start from "
                   "ImageNet weights, downloaded by keras.applications to ~/.keras/models (offline: "
                   "the error names the files to put there)")
    t.add_argument("--out", required=True, help="run folder to write (created if missing; "
                   "removed again if the command fails while it is still empty)")
    t.add_argument("--epochs", type=positive(int), help="number of epochs (default: the preset's; "
                   "with --resume, more than the run recorded extend it)")
    t.add_argument("--batch-size", type=positive(int), help="images per step (default: the preset's)")
    t.add_argument("--learning-rate", type=positive(float), help="initial learning rate (default: the preset's)")
    t.add_argument("--train-images", type=positive(int), help="shapes only: number of generated training images")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a FasterRCNN argument, VALUE in JSON (e.g. --set rpn_nms_iou=0.6)")
    t.add_argument("--classes", help=CLASSES_HELP)
    t.add_argument("--init-model", metavar="M.keras", help="start from the weights of a trained "
                   "model (same backbone): all of them for the same classes, all but the R-CNN "
                   "predictor's class and box layers for a different number of classes")
    t.add_argument("--resume", action="store_true", help="continue the run in OUT from its last "
                   "checkpoint (weights, optimizer state, epoch and step) at the exact step, with "
                   "the same data order; every setting is read from OUT/config.json, so "
                   "'frcnn train --out OUT --resume' alone continues the run. An option given "
                   "too must equal the recorded value (--checkpoint-every-*, --strategy and "
                   "--quiet may change). Ctrl-C (SIGINT) or SIGTERM during training writes a "
                   "checkpoint at the end of the step in progress and exits 130 / 143")
    t.add_argument("--checkpoint-every-steps", type=positive(int), metavar="N",
                   help="also checkpoint every N optimizer steps within an epoch (default: at epoch ends only)")
    t.add_argument("--checkpoint-every-minutes", type=positive(float), metavar="M",
                   help="also checkpoint when M minutes have passed since the last checkpoint")
    t.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                   help="devices to train on: default (one), mirrored (all local GPUs) or "
                   "multiworker (the machines in the TF_CONFIG environment variable, each running "
                   "this command; worker 0 writes OUT, which all must see to --resume; "
                   "--batch-size is the global batch; default: default)")
    t.add_argument("--precision", choices=PRECISIONS, help="float32 (default), mixed_float16 "
                   "(NVIDIA GPUs) or mixed_bfloat16 (TPUs, recent GPUs, CPUs with AMX or "
                   "AVX512-BF16); a resumed run keeps its checkpoint's")
    # Training controls (preset train settings, training/controls.py); None: the preset's.
    t.add_argument("--keep-best", action=argparse.BooleanOptionalAction, help="keep OUT/best.keras, "
                   "the model of the epoch with the highest val_mAP (default: on with --val-data)")
    t.add_argument("--early-stopping", type=positive(int), metavar="PATIENCE",
                   help="stop after PATIENCE validations without a val_mAP gain (needs --val-data; "
                   "default: off)")
    t.add_argument("--scale-jitter", type=_jitter, metavar="LOW,HIGH",
                   help="resize each training image by a random factor in [LOW, HIGH], cropped to "
                   "its canvas (torchvision's ScaleJitter; e.g. 0.8,1.25; default: off)")
    t.add_argument("--photometric", type=fraction, metavar="STRENGTH",
                   help="random brightness, contrast, saturation and hue of strength 0..1 (0.5: "
                   "torchvision's RandomPhotometricDistort ranges; default: 0, off)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return t


def _jitter(text):
    """``LOW,HIGH``: two positive numbers, LOW <= HIGH."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0.8,1.25), got {text!r}") from None
    if not (0 < low <= high < float("inf")):
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH, finite, got {text!r}")
    return [low, high]


# --option -> the preset train setting it sets (frcnn_lib/training/controls.py).
CONTROLS = (("keep_best", "keep_best"), ("early_stopping", "early_stopping_patience"),
            ("scale_jitter", "scale_jitter"), ("photometric", "photometric"))


# The options that define a run, recorded in OUT/config.json ("command") and read back by
# --resume: (argparse dest, option, may a resumed run change it?).  The checkpoint intervals
# and the devices do not change the result, so a resumed run may change them.
RECORDED = (
    ("preset", "--preset", False), ("data", "--data", False), ("val_data", "--val-data", False),
    ("epochs", "--epochs", False), ("batch_size", "--batch-size", False),
    ("learning_rate", "--learning-rate", False), ("train_images", "--train-images", False),
    ("classes", "--classes", False), ("precision", "--precision", False),
    ("checkpoint_every_steps", "--checkpoint-every-steps", True),
    ("checkpoint_every_minutes", "--checkpoint-every-minutes", True),
    ("strategy", "--strategy", True),
    ("keep_best", "--keep-best", False), ("early_stopping", "--early-stopping", False),
    ("scale_jitter", "--scale-jitter", False), ("photometric", "--photometric", False),
)
DEFAULT_PRESET = "shapes_cpu"


def run(args, session):
    from frcnn_lib.runtime.errors import FrcnnError
    from frcnn_lib.training.presets import get_preset

    # Everything that can be checked without TensorFlow first, so that mistakes fail fast.
    out = session.writable_folder(args.out)
    checkpoint_folder = os.path.join(out, "checkpoints")
    if args.classes is not None:
        from frcnn_lib.datasets.classes import parse_class_list
        args.classes = parse_class_list(args.classes)
    overrides = parse_overrides(args.set)
    if args.resume:
        for name in ("last.keras", "state.json"):
            existing_file(os.path.join(checkpoint_folder, name), "--resume: checkpoint")
        if args.init_model:
            raise FrcnnError("--init-model and --resume: choose one (a resumed run has its weights)")
        overrides = _recorded_run(args, overrides, os.path.join(out, "config.json"))
    args.preset = args.preset or DEFAULT_PRESET
    preset = get_preset(args.preset)
    train = preset["train"]
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                       ("learning_rate", args.learning_rate), ("train_images", args.train_images)):
        if value is not None:
            train[key] = value
    for dest, key in CONTROLS:
        if getattr(args, dest) is not None:
            train[key] = getattr(args, dest)
    if args.init_model:
        existing_file(args.init_model, "--init-model")
    from frcnn_lib.training import distribute
    # Before any other TensorFlow work (collective ops' rule); None: one device.
    strategy = None if args.strategy in (None, "default") else distribute.make_strategy(args.strategy)
    spec = (args.data or preset["data"]).strip()
    shapes = spec.startswith("shapes")
    data = load_data(spec, args.classes, **({"num_images": train["train_images"]} if shapes else {}))
    # Validation data is read with the training classes, so that label k means one thing.
    val = load_data(args.val_data, data.class_names) if args.val_data else None
    if val is not None and list(val.class_names) != list(data.class_names):
        raise FrcnnError(f"--val-data {args.val_data}: classes {val.class_names} differ from the "
                         f"training data's {data.class_names}")

    from frcnn_lib.model import DEFAULTS
    from frcnn_lib.training.runs import data_summary

    overrides = check_overrides(overrides, DEFAULTS)
    # What the run is, resolved: config.json records it, and --resume replays it.
    command = {"preset": args.preset, "data": spec, "val_data": args.val_data,
               "epochs": train["epochs"], "batch_size": train["batch_size"],
               "learning_rate": train["learning_rate"],
               "train_images": train["train_images"] if shapes else None,
               "classes": args.classes, "precision": args.precision, "set": overrides,
               "checkpoint_every_steps": args.checkpoint_every_steps,
               "checkpoint_every_minutes": args.checkpoint_every_minutes,
               "strategy": args.strategy or "default",
               **{dest: getattr(args, dest) for dest, _ in CONTROLS}}
    # The image counts of shapes' three splits are demo settings: the data says how many.
    for key in ("train_images", "val_images", "test_images"):
        train.pop(key, None)
    run_config = {"command": command,
                  "data": {"spec": spec, **data_summary(data)},
                  "val_data": {"spec": args.val_data, **data_summary(val)} if val is not None else None}
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, distribute.run_folder(out, strategy) as run_out:
        _train_in_scope(args, preset, train, overrides, data, val, spec, out, run_out, strategy,
                        run_config)
    session.result(f"model written to {os.path.join(out, 'model.keras')}")


def _recorded_run(args, overrides, path):
    """--resume: fill ``args`` from the run's recorded command (``path``, OUT/config.json);
    an option given that contradicts the recorded value is a FrcnnError naming both.
    Returns the ``--set`` overrides, the recorded ones with those given."""
    from frcnn_lib.model import DEFAULTS
    from frcnn_lib.runtime.errors import FrcnnError

    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)["command"]
        if not isinstance(recorded, dict):
            raise TypeError("'command' is not an object")
    except OSError as err:
        raise FrcnnError(f"--resume: {path}: cannot read the run's configuration "
                         f"({err.strerror or err})") from None
    except KeyError:
        raise FrcnnError(f"--resume: {path}: holds no 'command' record (written by an earlier "
                         f"frcnn); resume with the version that started the run, or start a new "
                         f"--out") from None
    except (ValueError, TypeError) as err:
        raise FrcnnError(f"--resume: {path}: not a run configuration ({err})") from None

    def shown(value):
        return ",".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) \
            else json.dumps(value) if not isinstance(value, str) else value

    for dest, option, may_change in RECORDED:
        given, before = getattr(args, dest), recorded.get(dest)
        if isinstance(given, str):
            given = given.strip()
        if given is None:
            setattr(args, dest, before)
        elif dest == "epochs" and isinstance(before, int) and given > before:
            # More epochs extend the run (as torchvision's reference scripts do): the
            # checkpoint's optimizer, schedule included, goes on where it stopped.
            args.extended_from = before
        elif given != before and not may_change:
            raise FrcnnError(f"{option} {shown(given)} contradicts {path} ({dest} {shown(before)}); "
                             f"a resumed run keeps its settings (drop {option}, or start a new --out)")
    recorded_set = recorded.get("set") or {}
    given_set = check_overrides(dict(overrides), DEFAULTS)
    for key, value in given_set.items():
        if key in recorded_set and not _same_setting(value, recorded_set[key]):
            raise FrcnnError(f"--set {key}={json.dumps(value)} contradicts {path} "
                             f"({key}={json.dumps(recorded_set[key])}); a resumed run keeps its "
                             f"settings (drop --set, or start a new --out)")
    return {**recorded_set, **given_set}


def _same_setting(a, b):
    """Whether two setting values are equal as settings: numbers by value (``32 == 32.0``, as a
    model stores ``anchor_scales`` as floats), lists and tuples element by element."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _train_in_scope(args, preset, train, overrides, data, val, spec, out, run_out, strategy, run_config):
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
            if not _same_setting(config[key], value):
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
        extended = getattr(args, "extended_from", None)
        extending = f"; extending the run from {extended} to {args.epochs} epochs" if extended else ""
        print(f"resuming from epoch {state['epoch']} (step {state['step']}{into}){extending}")
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
    # Ctrl-C or SIGTERM: a checkpoint at the end of the step in progress, then exit 130 / 143.
    on_signal = checkpoints.CheckpointOnSignal(os.path.join(run_out, "checkpoints"),
                                               math.ceil(len(data) / train["batch_size"]))
    training.fit(model, data, run_out, train["epochs"], train["batch_size"], train, val, state,
                 verbose=0 if args.quiet else 1, checkpoint_every_steps=args.checkpoint_every_steps,
                 checkpoint_every_minutes=args.checkpoint_every_minutes, strategy=strategy,
                 extra_callbacks=(on_signal,), run_config=run_config)
