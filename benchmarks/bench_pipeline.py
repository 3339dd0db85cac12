"""Benchmark: images per second of the input pipeline (``make_dataset``) on VOC-sized JPEGs,
next to the rate at which the model trains on the same batches.

Data: ``--images`` (default 200) JPEGs written to a temporary VOCdevkit folder and read back
with the VOC reader (``frcnn_lib.datasets.voc``): 70 % 500x375, 20 % 375x500 (Pascal VOC's
two common sizes), 10 % odd sizes (500x333, 353x500, 500x281, 480x360, 334x500); content:
smooth colour fields, rectangles and fine noise, JPEG quality 90 (about the bytes per
pixel of VOC's own files), 1-4 objects each.

Pipeline: ``make_dataset(data, batch_size, training=True)`` (shuffle + random flip, repeated)
at ``min_side 600 / max_side 1000``: every image is decoded by PIL on the host
(``tf.numpy_function``), resized to 800x600 or 600x800 (antialiased bilinear), padded to its
canvas and batched by orientation.  Timed: ``--batches`` batches after ``--warmup`` batches
(the warm-up fills the prefetch buffer and lets AUTOTUNE settle), each variant in a fresh
dataset, the variants round-robin ``--rounds`` times, median reported.

Variants (what a user can set; see benchmarks/README.md):

* ``default``: ``make_dataset`` as the library calls it (both maps ``AUTOTUNE``, prefetch).
* ``num_parallel_calls=1 / 2 / 4``: the maps' parallelism fixed instead of AUTOTUNE.
* ``deterministic=False``: tf.data may return mapped elements out of order (a slow image
  does not hold up the batch behind it); the shuffle stays seeded, the order of the
  resulting batches does not.
* ``private threadpool``: ``options.threading.private_threadpool_size = cores``.
* ``image cache``: ``data.cached()`` keeps decoded images in memory after their first read
  (timed in the second pass over the data; the cost is ``h * w * 3`` bytes an image).

Stage costs, one image at a time on one thread (where the time goes): PIL decode, TensorFlow
``decode_jpeg``, the resize, the pad.

Model: ``model.train_on_batch`` of ``FasterRCNN(backbone="vgg16")`` (paper settings) on
batches of this pipeline, ``--model-steps`` steps after one warm-up step; ``--model-steps 0``
skips it.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py [--images 200] [--batch-size 2]
[--batches 40] [--rounds 3] [--cores 2] [--model-steps 2] [--quick]``.
"""
import argparse
import os
import sys
import tempfile
import time


def _pin_cores(n):
    """Restrict this process (and TensorFlow's thread pools, sized from the affinity mask)
    to ``n`` cores; must run before TensorFlow is imported."""
    if n and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cores)
        return len(cores)
    return os.cpu_count()


SIZES = [(500, 375)] * 14 + [(375, 500)] * 4 + [(500, 333), (353, 500)]  # (width, height)
ODD = [(500, 281), (480, 360), (334, 500)]


def write_voc(root, count, seed=0):
    """A VOCdevkit year folder with ``count`` generated JPEGs; returns its path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    year = os.path.join(root, "VOC2007")
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(os.path.join(year, sub), exist_ok=True)
    ids = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)] if i % 10 else ODD[(i // 10) % len(ODD)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        image = np.stack([120 + 80 * np.sin(xx / rng.uniform(20, 90) + c)
                          * np.cos(yy / rng.uniform(20, 90) - c) for c in range(3)], -1)
        objects = []
        for _ in range(int(rng.integers(1, 5))):
            bw, bh = int(rng.integers(30, w // 2)), int(rng.integers(30, h // 2))
            x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            image[y1:y1 + bh, x1:x1 + bw] = rng.uniform(0, 255, 3)
            objects.append((x1 + 1, y1 + 1, x1 + bw, y1 + bh))
        image += rng.normal(0, 12, image.shape)
        image_id = f"{i:06d}"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            os.path.join(year, "JPEGImages", image_id + ".jpg"), quality=90)
        objs = "".join(
            f"<object><name>{['dog', 'car', 'person', 'chair'][k % 4]}</name><difficult>0</difficult>"
            f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
            for k, (a, b, c, d) in enumerate(objects))
        with open(os.path.join(year, "Annotations", image_id + ".xml"), "w") as f:
            f.write(f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width>"
                    f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>")
        ids.append(image_id)
    with open(os.path.join(year, "ImageSets", "Main", "trainval.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return year


def images_per_second(make, batches, warmup):
    """``(images/s, padded pixel share)`` over ``batches`` batches of a fresh dataset after
    ``warmup`` batches."""
    it = iter(make())
    for _ in range(warmup):
        next(it)
    n = real = total = 0
    start = time.perf_counter()
    for _ in range(batches):
        images, targets = next(it)
        n += int(images.shape[0])
        sizes = targets["image_sizes"].numpy()
        real += int((sizes[:, 0] * sizes[:, 1]).sum())
        total += int(images.shape[0] * images.shape[1] * images.shape[2])
    return n / (time.perf_counter() - start), 1 - real / total


def stage_costs(data, repeats, min_side=600, max_side=1000):
    """Median ms per image of each host stage, one image at a time."""
    import numpy as np
    import tensorflow as tf

    from frcnn_lib.datasets.pipeline import canvas_size, pad_to_canvas, resize_image

    resize = tf.function(lambda im: resize_image(im, min_side, max_side)[0], reduce_retracing=True)
    pad = tf.function(lambda im, c: pad_to_canvas(im, (c[0], c[1])), reduce_retracing=True)
    decode = tf.function(lambda b: tf.io.decode_jpeg(b, channels=3))
    # The same bilinear resize without the antialiasing kernel: identical when upscaling
    # (VOC's 500x375 -> 800x600; max difference 5e-5 of 255 here), which most images are.
    plain = tf.function(lambda im, hw: tf.image.resize(tf.cast(im, tf.float32), hw, "bilinear"),
                        reduce_retracing=True)
    out = {"PIL decode (read_image)": [], "tf.io.decode_jpeg": [], "resize to 600-1000": [],
           "resize, antialias=False": [], "pad to canvas": []}
    for i in range(min(repeats, len(data))):
        record = data.records[i]
        t = time.perf_counter()
        image = data.read_image(i)
        out["PIL decode (read_image)"].append(time.perf_counter() - t)
        raw = tf.constant(open(record.image, "rb").read())
        t = time.perf_counter()
        decode(raw).numpy()
        out["tf.io.decode_jpeg"].append(time.perf_counter() - t)
        t = time.perf_counter()
        resized = resize(tf.constant(image))
        resized.numpy()
        out["resize to 600-1000"].append(time.perf_counter() - t)
        t = time.perf_counter()
        plain(tf.constant(image), tf.shape(resized)[:2]).numpy()
        out["resize, antialias=False"].append(time.perf_counter() - t)
        canvas = canvas_size(min_side, max_side, portrait=image.shape[0] > image.shape[1])
        t = time.perf_counter()
        pad(resized, tf.constant(canvas)).numpy()
        out["pad to canvas"].append(time.perf_counter() - t)
    # The first call of each traced function includes tracing: drop it.
    return {k: 1000 * float(np.median(v[1:] if len(v) > 1 else v)) for k, v in out.items()}


def model_rate(data, batch_size, steps, quick):
    """images/s of ``train_on_batch`` (vgg16, paper settings) on this pipeline's batches."""
    import keras

    from frcnn_lib import FasterRCNN
    from frcnn_lib.datasets.pipeline import make_dataset

    keras.utils.set_random_seed(0)
    kwargs = dict(backbone="vgg16")
    sides = (600, 1000)
    if quick:
        kwargs.update(roi_head_units=256, rpn_channels=64, rpn_pre_nms_top_n_train=600,
                      rpn_post_nms_top_n_train=100, roi_batch_size=32)
        sides = (128, 160)
    model = FasterRCNN(data.num_classes, image_min_side=sides[0], image_max_side=sides[1], **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    ds = make_dataset(data, batch_size, training=True, min_side=sides[0], max_side=sides[1],
                      repeat=True, drop_remainder=True)
    it = iter(ds)
    images, targets = next(it)
    t = time.perf_counter()
    model.train_on_batch(images, targets)
    first = time.perf_counter() - t
    times = []
    for _ in range(steps):
        images, targets = next(it)
        t = time.perf_counter()
        model.train_on_batch(images, targets)
        times.append(time.perf_counter() - t)
    times.sort()
    return batch_size / times[len(times) // 2], first, [tuple(images.shape)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=2, help="voc_vgg16's batch (default 2)")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per variant and round")
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2, help="pin the process to this many cores (0: all)")
    parser.add_argument("--model-steps", type=int, default=2, help="timed vgg16 train steps (0: skip)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 24 images, few batches, "
                        "a shrunken vgg16 at 128x160")
    args = parser.parse_args()
    if args.quick:
        args.images, args.batches, args.warmup, args.rounds = 24, 4, 2, 1
        args.model_steps = min(args.model_steps, 1)
    cores = _pin_cores(args.cores)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common as C
    import tensorflow as tf

    from frcnn_lib.datasets import voc
    from frcnn_lib.datasets.pipeline import make_dataset

    print(C.machine_info() + f"; pinned to {cores} cores")
    with tempfile.TemporaryDirectory(prefix="bench-voc-") as root:
        t = time.perf_counter()
        year = write_voc(root, args.images)
        megabytes = sum(os.path.getsize(os.path.join(year, "JPEGImages", f))
                        for f in os.listdir(os.path.join(year, "JPEGImages"))) / 1e6
        data = voc.load(year, "trainval")
        print(f"{len(data)} JPEGs ({megabytes / len(data) * 1000:.0f} kB each on average) written and "
              f"read in {time.perf_counter() - t:.1f} s")
        common = dict(training=True, min_side=600, max_side=1000, repeat=True, seed=0)
        cached = data.cached()

        def with_options(**opts):
            def make():
                ds = make_dataset(data, args.batch_size, **common)
                options = tf.data.Options()
                if "deterministic" in opts:
                    options.deterministic = opts["deterministic"]
                if "threads" in opts:
                    options.threading.private_threadpool_size = opts["threads"]
                return ds.with_options(options)
            return make

        def warm_cache():
            for i in range(len(cached)):
                cached.read_image(i)
            return lambda: make_dataset(cached, args.batch_size, **common)

        variants = {
            "default (AUTOTUNE)": lambda: make_dataset(data, args.batch_size, **common),
            "num_parallel_calls=1": lambda: make_dataset(data, args.batch_size, num_parallel_calls=1, **common),
            "num_parallel_calls=2": lambda: make_dataset(data, args.batch_size, num_parallel_calls=2, **common),
            "num_parallel_calls=4": lambda: make_dataset(data, args.batch_size, num_parallel_calls=4, **common),
            "deterministic=False": with_options(deterministic=False),
            f"private threadpool ({cores})": with_options(threads=cores),
            "image cache (data.cached())": warm_cache(),
        }
        rates = {name: [] for name in variants}
        padded = {}
        for _ in range(args.rounds):
            for name, make in variants.items():
                rate, pad = images_per_second(make, args.batches, args.warmup)
                rates[name].append(rate)
                padded[name] = pad
        med = {k: C.median(v) for k, v in rates.items()}
        base = med["default (AUTOTUNE)"]
        rows = [[k, f"{med[k]:.1f}", f"{min(v):.1f}-{max(v):.1f}", f"{med[k] / base:.2f}",
                 f"{med[k] / cores:.1f}"] for k, v in rates.items()]
        print(f"\n## make_dataset, training (shuffle + flip), 600/1000, batch {args.batch_size}, "
              f"{args.batches} batches after {args.warmup}, median of {args.rounds} rounds")
        print(C.table(rows, ["variant", "images/s", "min-max", "/ default", "images/s per core"]))
        print(f"padded pixels (fixed canvases): {100 * padded['default (AUTOTUNE)']:.1f} % of all pixels")

        stages = stage_costs(data, 5 if args.quick else 30)
        print("\n## host stages, one image at a time, median ms")
        print(C.table([[k, f"{v:.1f}"] for k, v in stages.items()], ["stage", "ms / image"]))
        serial = stages["PIL decode (read_image)"] + stages["resize to 600-1000"] + stages["pad to canvas"]
        print(f"sum of the library's stages: {serial:.1f} ms -> {1000 / serial:.1f} images/s on one core")

        model = None
        if args.model_steps:
            rate, first, shapes = model_rate(data, args.batch_size, args.model_steps, args.quick)
            model = rate
            print(f"\n## vgg16 train_on_batch on these batches{' [quick: shrunken]' if args.quick else ''}: "
                  f"{rate:.3f} images/s (median of {args.model_steps} steps of batch {args.batch_size}, "
                  f"first step {first:.1f} s, batch shape {shapes[0]})")
    summary = (f"SUMMARY pipeline: default {base:.1f} images/s on {cores} cores "
               f"({base / cores:.1f} per core), best {max(med, key=med.get)} {max(med.values()):.1f}")
    if model is not None:
        summary += f"; vgg16 training on this CPU {model:.3f} images/s -> pipeline/model {base / model:.0f}x"
    print("\n" + summary)


if __name__ == "__main__":
    main()
