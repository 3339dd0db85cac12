"""``frcnn export``: a SavedModel folder, or a TFLite / ONNX file, from a saved model, on the
TF Object Detection API's contract (``frcnn_lib.export.contract``, docs/deploy.md)."""
import os

from frcnn_lib.cli.common import existing_file


def add_parser(subparsers):
    x = subparsers.add_parser("export", help="export the model for deployment (SavedModel, TFLite or ONNX)",
                              description="Write a file to deploy on the TF Object Detection API contract "
                              "(docs/deploy.md): input_tensor uint8 (1, H, W, 3) of any size -> "
                              "detection_boxes (normalised [ymin, xmin, ymax, xmax]), detection_scores, "
                              "detection_classes, num_detections; the resize and the class names are inside "
                              "the file. The SavedModel's signature is 'serving_default' (plus 'serve': "
                              "padded outputs for prepared float batches).")
    x.add_argument("--model", required=True, help="a .keras file written by 'frcnn train'")
    x.add_argument("--out", required=True,
                   help="SavedModel folder to write (a .tflite / .onnx file with --format tflite / onnx)")
    x.add_argument("--format", choices=("saved_model", "tflite", "onnx"), default="saved_model",
                   help="saved_model (default); tflite: a float32 TFLite file, builtin ops only; "
                        "onnx: an ONNX file (opset 17) through tf2onnx (the onnx extra)")
    return x


def run(args, session):
    from frcnn_lib.runtime.errors import FrcnnError

    existing_file(args.model, "--model")
    if args.format in FILE_EXPORTS:
        return _export_file(args, session)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FrcnnError(f"--out {args.out}: is a file; expected a new folder")
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise FrcnnError(f"--out {args.out}: folder exists and is not empty; choose a new one")
    parent = os.path.dirname(os.path.abspath(args.out))
    session.writable_folder(parent, f"--out {args.out}: parent folder")

    from frcnn_lib.training import checkpoints

    model = checkpoints.load_model(args.model, compile=False)
    if not args.quiet:
        print(f"exporting {args.model} (tracing the serving graph) ...", flush=True)
    model.export(args.out, verbose=False)
    session.result(f"SavedModel written to {args.out} (signature 'serving_default': input_tensor uint8 "
                   f"(1, H, W, 3) -> detection_boxes, detection_scores, detection_classes, num_detections)")


# --format -> (name, what the converter does, the file's input)
FILE_EXPORTS = {
    "tflite": ("TFLite", "tracing and converting", "signature 'serving_default': input_tensor uint8 (1, H, W, 3)"),
    "onnx": ("ONNX", "tracing, then converting", "input 'input_tensor' uint8 (1, H, W, 3)"),
}


def _export_file(args, session):
    """--format tflite / onnx: one file, written when complete."""
    from frcnn_lib.training import checkpoints

    name, stages, inputs = FILE_EXPORTS[args.format]
    session.writable_file(args.out)
    model = checkpoints.load_model(args.model, compile=False)
    if not args.quiet:
        print(f"exporting {args.model} to {name} ({stages}) ...", flush=True)
    size = model.export(args.out, format=args.format)
    session.result(f"{name} model written to {args.out} ({size / 1e6:.1f} MB; {inputs} -> "
                   f"detection_boxes, detection_scores, detection_classes, num_detections)")
