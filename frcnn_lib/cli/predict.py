"""``frcnn predict``: detections on image files, folders or glob patterns, as
``OUT/detections.json`` (and COCO results JSON) plus one annotated picture per image."""
import glob
import os

from frcnn_lib.cli.common import existing_file, fraction, positive

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def add_parser(subparsers):
    r = subparsers.add_parser("predict", help="detect objects in image files, folders or glob patterns",
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
    r.add_argument("--score-threshold", type=fraction, default=0.5,
                   help="keep detections scoring at least this, in [0, 1] (default 0.5)")
    r.add_argument("--class-names", help="comma-separated names of classes 1..K (default: the "
                   "names the model was trained with, if it has them)")
    r.add_argument("--max-size", type=positive(int), metavar="PIXELS",
                   help="scale pictures down so that their longer side is at most this "
                   "(default: each image at its own resolution)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    return r


def image_list(arguments):
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
            found = [existing_file(argument, "image")]
        files.extend(found)
    return files


def run(args, session):
    from frcnn_lib.runtime.errors import FrcnnError

    existing_file(args.model, "--model")
    paths = image_list(args.images)
    if args.coco_results:
        session.writable_file(args.coco_results, "--coco-results")
    out = session.writable_folder(args.out)

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
        results.append(prediction_json(path, image_id, image.shape, det, names))
    training.write_json(os.path.join(out, "detections.json"), results)
    written = f" and {args.coco_results}" if args.coco_results else ""
    if args.coco_results:
        training.write_json(args.coco_results, coco_results(results))
    session.result(f"{sum(len(r['boxes']) for r in results)} detections in {len(results)} images -> "
                   f"{out}{written}")


def prediction_json(path, image_id, shape, det, names):
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


def coco_results(results):
    """detections.json entries as COCO results (``loadRes``' format): one dict per box with
    ``bbox`` ``[x, y, width, height]``."""
    return [{"image_id": r["image_id"], "category_id": c,
             "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": s}
            for r in results for (x1, y1, x2, y2), s, c in zip(r["boxes"], r["scores"], r["category_ids"])]
