"""Benchmark: compiled inference of ``FasterRCNN`` against its compute floor.

Two configurations, random weights (``backbone_weights=None``), random images:

* ``vgg16``: the paper's settings: 600x800 input, 300 proposals
  (``rpn_post_nms_top_n_test=300``), ``roi_head_units=4096``, 20 (VOC) classes.
* ``small``: the ``shapes_cpu`` preset (160x160, 100 proposals, 256 units, 5 classes).

Timed, in one process, round-robin after a warm-up, median of ``--repeats`` runs:

* ``model``: ``tf.function(lambda x: model(x, training=False))`` (autograph off: the
  library has no data-dependent Python control flow, so the graph is the same), batch 1,
  result copied to the host;
* ``floor``: the compute floor: the model's own conv trunk (VGG-16 conv1_1..conv5_3)
  plus fc6 and fc7 as two plain matmuls on ``P`` RoI rows (300x25088 @ 25088x4096 and
  300x4096 @ 4096x4096 for vgg16), one ``tf.function``;
* ``detect``: ``model.detect(image)`` on the same image as a ``uint8 (h, w, 3)`` numpy
  array: the call users make (convert, resize to ``image_min_side``/``image_max_side``,
  pad onto its canvas, the compiled graph, boxes back to the image), detections
  returned as numpy; for vgg16 a 600x800 image stays 600x800 and is padded to its canvas
  608x800 (``pipeline.canvas_for``: sides rounded up to 32; the padded share is printed);
* ``floor + RPN head``: the floor plus an RPN head of the model's shape on the trunk's
  features (the one dense layer the floor leaves out): ``model / (floor + RPN head)`` is
  the share that is not dense compute;
* ``backbone``: the model's backbone (preprocessing + trunk) alone;
* for ``small`` also ``model.predict_on_batch`` (Keras' predict function, with its
  per-call overhead).

Reported: ``model / floor`` (goal for vgg16: <= 1.10), ``detect / floor`` (issue 12's goal
for vgg16: <= 1.05), ``detect / model``, ``backbone / floor``, the first
call (tracing + graph optimisation + one run) apart, and images/s at batch 1, 2, 4 (the
three batch sizes interleaved, ``--throughput-repeats`` runs after a warm-up).

Run: ``.venv/bin/python benchmarks/bench_inference.py [--configs vgg16,small]
[--repeats 5] [--throughput-repeats 3] [--ratios-only] [--quick]``.
"""
import argparse
import time

import _common as C
import tensorflow as tf


def compiled_model(model):
    @tf.function(autograph=False)
    def infer(images):
        return model(images, training=False)
    return infer


def run_config(name, cfg, repeats, throughput_repeats, ratios_only=False):
    t0 = time.perf_counter()
    model = C.build_model(cfg)
    build_s = time.perf_counter() - t0
    num_rois = cfg["kwargs"].get("rpn_post_nms_top_n_test", 300)
    images = {b: C.random_images(b, cfg["size"], seed=b) for b in (1, 2, 4)}
    infer = compiled_model(model)
    floor = C.make_floor(model, num_rois)
    floor_rpn = C.make_floor(model, num_rois, with_rpn=True)

    @tf.function(autograph=False)
    def backbone(x):
        return tf.reduce_sum(model.backbone(x, training=False))

    # The user path: the same pixels as a uint8 numpy image, through model.detect.
    image_u8 = images[1][0].numpy().round().astype("uint8")
    first = {
        "model": C.first_call(lambda: infer(images[1])),
        "detect": C.first_call(lambda: model.detect(image_u8)),
        "floor": C.first_call(lambda: floor(images[1])),
        "floor + RPN head": C.first_call(lambda: floor_rpn(images[1])),
        "backbone": C.first_call(lambda: backbone(images[1])),
    }
    fns = {"model": lambda: infer(images[1]), "detect": lambda: model.detect(image_u8),
           "floor": lambda: floor(images[1]), "floor + RPN head": lambda: floor_rpn(images[1]),
           "backbone": lambda: backbone(images[1])}
    if name == "small":
        first["predict_on_batch"] = C.first_call(lambda: model.predict_on_batch(images[1]))
        fns["predict_on_batch"] = lambda: model.predict_on_batch(images[1])
    times = C.interleaved(fns, repeats, warmup=1)
    med = {k: C.median(v) for k, v in times.items()}
    cpu = {k: C.median(v) for k, v in times.cpu.items()}

    rows = []
    for k in fns:
        rows.append([k, f"{1000 * med[k]:.1f}", C.spread([1000 * t for t in times[k]]),
                     f"{med[k] / med['floor']:.3f}", f"{cpu[k] / cpu['floor']:.3f}", f"{first[k]:.2f}"])
    print(f"\n## {name}: {cfg['size'][0]}x{cfg['size'][1]}, {num_rois} proposals, "
          f"batch 1, median of {len(times['floor'])} interleaved runs (model built in {build_s:.1f} s)")
    print(C.table(rows, ["what", "median ms", "min-max ms", "/ floor", "CPU time / floor", "first call s"]),
          flush=True)
    from frcnn_lib.datasets.pipeline import canvas_for, resize_image
    s = model.settings
    h, w = cfg["size"]
    resized = resize_image(image_u8, s["image_min_side"], s["image_max_side"])[0].shape[:2]
    canvas = canvas_for(resized[0], resized[1], s["image_min_side"], s["image_max_side"])
    padded = 1 - resized[0] * resized[1] / (canvas[0] * canvas[1])
    print(f"detect: {h}x{w} -> resized {resized[0]}x{resized[1]} on canvas {canvas[0]}x{canvas[1]} "
          f"({100 * padded:.1f} % of the canvas is padding; canvas / image pixels "
          f"{canvas[0] * canvas[1] / (h * w):.3f}); detect / model {med['detect'] / med['model']:.3f} "
          f"(CPU time {cpu['detect'] / cpu['model']:.3f})")
    result = {"model_floor": med["model"] / med["floor"], "backbone_floor": med["backbone"] / med["floor"],
              "detect_floor": med["detect"] / med["floor"], "cpu_detect_floor": cpu["detect"] / cpu["floor"],
              "detect_model": med["detect"] / med["model"],
              "cpu_model_floor": cpu["model"] / cpu["floor"],
              "model_floor_rpn": med["model"] / med["floor + RPN head"],
              "first_call": first["model"], "images_per_s": {1: 1 / med["model"]}}
    if ratios_only:
        return result

    # Throughput: batch 1, 2, 4 interleaved (each traced once first).
    for b in (2, 4):
        first[f"model batch {b}"] = C.first_call(lambda b=b: infer(images[b]))
    tput = C.interleaved({b: (lambda b=b: infer(images[b])) for b in (1, 2, 4)},
                         throughput_repeats, warmup=0)
    tmed = {b: C.median(v) for b, v in tput.items()}

    trows = [[b, f"{1000 * tmed[b]:.1f}", f"{b / tmed[b]:.2f}", f"{tmed[1] * b / tmed[b]:.2f}",
              f"{first.get(f'model batch {b}', first['model']):.2f}"] for b in (1, 2, 4)]
    print(f"\nthroughput of the compiled model, median of {len(tput[1])} interleaved runs")
    print(C.table(trows, ["batch", "median ms", "images/s", "speed-up vs batch 1", "first call s"]))
    result["images_per_s"] = {b: b / tmed[b] for b in (1, 2, 4)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="vgg16,small", help="comma-separated: vgg16, small")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs for the ratios (>= 5)")
    parser.add_argument("--throughput-repeats", type=int, default=3)
    parser.add_argument("--ratios-only", action="store_true", help="skip the batch 2 and 4 throughput")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a shrunken vgg16 (128x160) and small, few repeats")
    args = parser.parse_args()
    print(C.machine_info())
    configs = C.configs(args.quick)
    results = {}
    for name in args.configs.split(","):
        repeats = args.repeats if name == "vgg16" or args.quick else max(args.repeats, 30)
        results[name] = run_config(name, configs[name], repeats,
                                   2 if args.quick else (args.throughput_repeats if name == "vgg16"
                                                         else max(args.throughput_repeats, 20)),
                                   args.ratios_only)
    parts = []
    for name, r in results.items():
        goal = " (goal <= 1.10)" if name == "vgg16" and not args.quick else ""
        dgoal = " (goal <= 1.05)" if name == "vgg16" and not args.quick else ""
        parts.append(f"{name}{' [quick]' if args.quick else ''}: model/floor {r['model_floor']:.2f}{goal} "
                     f"(CPU time {r['cpu_model_floor']:.2f}), model/(floor + RPN head) "
                     f"{r['model_floor_rpn']:.2f}, detect/floor {r['detect_floor']:.2f}{dgoal} "
                     f"(CPU time {r['cpu_detect_floor']:.2f}), detect/model {r['detect_model']:.2f}, "
                     f"backbone/floor {r['backbone_floor']:.2f}, first call {r['first_call']:.1f} s, "
                     f"images/s b1/b2/b4 " + "/".join(f"{r['images_per_s'].get(b, float('nan')):.2f}" for b in (1, 2, 4)))
    print("\nSUMMARY inference: " + "; ".join(parts))


if __name__ == "__main__":
    main()
