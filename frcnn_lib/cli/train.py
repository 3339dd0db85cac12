"""``frcnn train``: train a detector and write a run folder (``training/runs.py`` says what
it holds)."""
import contextlib
import json
import os

from frcnn_lib.cli.common import CLASSES_HELP, DATA_HELP, check_overrides, existing_file, \
    load_data, parse_overrides, positive
from frcnn_lib.training.precision import PRECISIONS, policy_scope, precision_of


def add_parser(subparsers):
    t = subparsers.add_parser("train", help="train a detector and write a run folder",
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
    t.add_argument("--epochs", type=positive(int), help="number of epochs (default: the preset's)")
    t.add_argument("--batch-size", type=positive(int), help="images per step (default: the preset's)")
    t.add_argument("--learning-rate", type=positive(float), help="initial learning rate (default: the preset's)")
    t.add_argument("--train-images", type=positive(int), help="shapes only: number of generated training images")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a FasterRCNN argument, VALUE in JSON (e.g. --set rpn_nms_iou=0.6)")
    t.add_argument("--classes", help=CLASSES_HELP)
    t.add_argument("--init-model", metavar="M.keras", help="start from the weights of a trained "
                   "model (same backbone): all of them for the same classes, all but the R-CNN "
                   "predictor's class and box layers for a different number of classes")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints (weights, "
                   "optimizer state, epoch and step) at the exact step, with the same data order")
    t.add_argument("--checkpoint-every-steps", type=positive(int), metavar="N",
                   help="also checkpoint every N optimizer steps within an epoch (default: at epoch ends only)")
    t.add_argument("--checkpoint-every-minutes", type=positive(float), metavar="M",
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
    return t


def run(args, session):
    from frcnn_lib.runtime.errors import FrcnnError
    from frcnn_lib.training.presets import get_preset

    # Everything that can be checked without TensorFlow first, so that mistakes fail fast.
    preset = get_preset(args.preset)
    train = preset["train"]
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                       ("learning_rate", args.learning_rate), ("train_images", args.train_images)):
        if value is not None:
            train[key] = value
    overrides = parse_overrides(args.set)
    out = session.writable_folder(args.out)
    checkpoint_folder = os.path.join(out, "checkpoints")
    if args.resume:
        for name in ("last.keras", "state.json"):
            existing_file(os.path.join(checkpoint_folder, name), "--resume: checkpoint")
    if args.init_model:
        existing_file(args.init_model, "--init-model")
        if args.resume:
            raise FrcnnError("--init-model and --resume: choose one (a resumed run has its weights)")
    from frcnn_lib.datasets.classes import parse_class_list
    classes = parse_class_list(args.classes) if args.classes else None
    from frcnn_lib.training import distribute
    # Before any other TensorFlow work (collective ops' rule); None: one device.
    strategy = None if args.strategy == "default" else distribute.make_strategy(args.strategy)
    spec = args.data or preset["data"]
    shapes_kw = {"num_images": train.get("train_images")} if spec.startswith("shapes") else {}
    data = load_data(spec, classes, **shapes_kw)
    # Validation data is read with the training classes, so that label k means one thing.
    val = load_data(args.val_data, data.class_names if args.val_data.startswith("voc:") else None) \
        if args.val_data else None
    if val is not None and list(val.class_names) != list(data.class_names):
        raise FrcnnError(f"--val-data {args.val_data}: classes {val.class_names} differ from the "
                         f"training data's {data.class_names}")

    from frcnn_lib.model import DEFAULTS

    overrides = check_overrides(overrides, DEFAULTS)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope, distribute.run_folder(out, strategy) as run_out:
        _train_in_scope(args, preset, train, overrides, data, val, spec, out, run_out, strategy)
    session.result(f"model written to {os.path.join(out, 'model.keras')}")


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
