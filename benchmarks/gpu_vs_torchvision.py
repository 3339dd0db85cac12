"""frcnn_lib's vgg16 Faster R-CNN against torchvision's ``FasterRCNN`` with the same VGG-16
conv5_3 backbone and settings: training and inference images/s, side by side, one table.

Both models (settings in benchmarks/_gpu.py's docstring, the paper's):

* **frcnn_lib**: ``FasterRCNN(20, backbone="vgg16")``, ``train_on_batch`` /
  ``predict_on_batch``, ``jit_compile`` True (XLA) and False, policies ``float32``,
  ``mixed_float16`` and ``mixed_bfloat16``.
* **torchvision**: ``torchvision.models.detection.FasterRCNN`` with
  ``vgg16().features[:-1]`` (conv1_1..conv5_3 + ReLU, stride 16, ``out_channels=512``),
  ``AnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),))`` (one feature map, 9 anchors),
  RoI pooling 7x7 (``torchvision.ops.roi_pool`` at scale 1/16, as frcnn's ``roi_pool``;
  ``--roi roi_align``: ``MultiScaleRoIAlign`` on both sides), a fc6/fc7 head of 4096 with
  ReLU and dropout 0.5 (VGG's classifier, as frcnn's), ``FastRCNNPredictor(4096, 21)``; RPN
  12000/2000 (train) and 6000/300 (test) proposals, NMS 0.7, 256 anchors / 128 RoIs sampled
  per image with fractions 0.5 / 0.25, IoU thresholds 0.7/0.3 and 0.5, box weights
  (10, 10, 5, 5), detections: score 0.05, NMS 0.3, 100 per image; ``min_size=600,
  max_size=1000`` so the 600x1000 images are not resized, padded to multiples of 32 (608x1024,
  as frcnn).  SGD momentum 0.9, weight decay 5e-4; one ``optimizer.step()`` per batch.
  Precision: float32 (TF32 allowed in matmuls and convolutions, as TensorFlow does by
  default on Ampere and newer GPUs) and AMP
  (``torch.autocast`` float16 with ``GradScaler``, and bfloat16); compiler: eager, or
  ``torch.compile`` with ``--torch-compile`` (detection models often fail to compile; a
  failure is a row).

Same batch (2), same image size (600x1000), same random images and 3 boxes per image, timed
the same way: median of the timed calls after warm-up, each call ending with the result on
the host (``torch.cuda.synchronize()``), first calls apart.

The torchvision half runs in a child process (``--torch-python``, default this Python):
PyTorch and TensorFlow need not share an environment (here torch lives in its own venv),
and the two never hold the GPU at once.  The parent prints one table.

Run on a GPU machine (torch with CUDA beside or in another venv)::

    python benchmarks/gpu_vs_torchvision.py --torch-python /path/to/torch-venv/bin/python

Dry run on a CPU (tiny sizes; checks that every code path runs, numbers mean nothing)::

    python benchmarks/gpu_vs_torchvision.py --smoke --torch-python /tmp/tv-venv/bin/python
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _gpu as G  # noqa: E402

SAMPLING = dict(rpn_pre_nms_top_n_train=12000, rpn_post_nms_top_n_train=2000,
                rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300)


# ------------------------------------------------------------------ torchvision half
def torchvision_model(cfg, roi):
    import torch
    from torch import nn
    from torchvision.models import vgg16
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.rpn import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign, roi_pool

    class RoIPool7(MultiScaleRoIAlign):
        """``torchvision.ops.roi_pool`` 7x7 at 1/16 on the one feature map, with
        ``MultiScaleRoIAlign``'s call signature (``FasterRCNN`` accepts only that type)."""

        def __init__(self):
            super().__init__(["0"], output_size=7, sampling_ratio=0)

        def forward(self, x, boxes, image_shapes):
            # roi_pool has no bfloat16 kernel (and no autocast rule): pool in float32.
            features = x["0"]
            pooled = roi_pool(features.float(), [b.float() for b in boxes], output_size=7,
                              spatial_scale=1 / 16)
            return pooled.to(features.dtype)

    backbone = vgg16(weights=None).features[:-1]  # conv5_3 + ReLU, without pool5
    backbone.out_channels = 512
    units = cfg["frcnn"].get("roi_head_units", 4096)
    head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, units), nn.ReLU(inplace=True),
                         nn.Dropout(0.5), nn.Linear(units, units), nn.ReLU(inplace=True), nn.Dropout(0.5))
    pool = RoIPool7() if roi == "roi_pool" else MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    s = {**SAMPLING, **{k: v for k, v in cfg["frcnn"].items() if k.startswith("rpn_pre") or k.startswith("rpn_post")}}
    h, w = cfg["size"]
    model = FasterRCNN(
        backbone, num_classes=None, min_size=h, max_size=w,
        rpn_anchor_generator=AnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_train=s["rpn_pre_nms_top_n_train"], rpn_post_nms_top_n_train=s["rpn_post_nms_top_n_train"],
        rpn_pre_nms_top_n_test=s["rpn_pre_nms_top_n_test"], rpn_post_nms_top_n_test=s["rpn_post_nms_top_n_test"],
        rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3, rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5, box_roi_pool=pool, box_head=head,
        box_predictor=FastRCNNPredictor(units, G.NUM_CLASSES + 1), box_score_thresh=0.05,
        box_nms_thresh=0.3, box_detections_per_img=100, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
        box_batch_size_per_image=cfg["frcnn"].get("roi_batch_size", 128), box_positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0))
    return model, torch


def torchvision_rates(precision, compiled, cfg, roi):
    import numpy as np

    model, torch = torchvision_model(cfg, roi)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # TensorFlow allows TF32 in float32 matmuls and convolutions on Ampere+ by default;
    # allow it here too, so that the float32 rows compare like with like.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model.to(device)
    b, (h, w) = cfg["batch"], cfg["size"]
    rng = np.random.default_rng(0)
    # torchvision normalises images given in 0..1 with the ImageNet mean/std itself.
    images = [torch.from_numpy(rng.uniform(0, 1, (3, h, w)).astype(np.float32)).to(device) for _ in range(b)]
    targets = [{"boxes": torch.tensor(G.boxes_for(cfg["size"]), device=device),
                "labels": torch.tensor([1, 5, 12], device=device)} for _ in range(b)]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    amp_dtype = {"float32": None, "amp_float16": torch.float16, "amp_bfloat16": torch.bfloat16}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    forward = torch.compile(model) if compiled else model

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train():
        model.train()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            losses = forward(images, targets)
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())  # host copy: the step has finished
        sync()
        return value

    def infer():
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                             enabled=amp_dtype is not None):
            out = forward(images)
        sync()
        return [{k: v.cpu() for k, v in o.items()} for o in out]

    out = {}
    for kind, call in (("train", train), ("infer", infer)):
        t = time.perf_counter()
        result = call()
        out[f"{kind}_first_s"] = time.perf_counter() - t
        for _ in range(cfg["warmup"] - 1):
            call()
        times = []
        for _ in range(cfg["steps"]):
            t = time.perf_counter()
            result = call()
            times.append(time.perf_counter() - t)
        out[f"{kind}_images_per_s"] = b / G.median(times)
        if kind == "train":
            out["loss"] = result
    return out


def torch_half(args, cfg):
    """Child process: one JSON line per row, then the versions."""
    import torch
    import torchvision

    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"no GPU: CPU ({G.cpu_name()})")
    print("TORCH_INFO " + json.dumps({"device": device, "versions": f"PyTorch {torch.__version__}, "
                                      f"torchvision {torchvision.__version__}, CUDA {torch.version.cuda}, "
                                      f"cuDNN {torch.backends.cudnn.version()}"}), flush=True)
    for precision in args.torch_precisions.split(","):
        for compiled in ([False, True] if args.torch_compile else [False]):
            row = {"library": "torchvision", "precision": precision,
                   "compiler": "torch.compile" if compiled else "eager (none)"}
            try:
                row.update(torchvision_rates(precision, compiled, cfg, args.roi))
            except Exception as err:  # noqa: BLE001 -- reported in the table
                row["error"] = G.short_error(err)
            print("ROW " + json.dumps(row), flush=True)


# ------------------------------------------------------------------ parent
def run_torch_child(args):
    cmd = [args.torch_python, os.path.abspath(__file__), "--_torch-half", "--roi", args.roi,
           "--torch-precisions", args.torch_precisions]
    cmd += ["--smoke"] if args.smoke else []
    cmd += ["--torch-compile"] if args.torch_compile else []
    cmd += ["--repeats", str(args.repeats)] if args.repeats else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.torch_timeout, env=env)
    info, rows = None, []
    for line in proc.stdout.splitlines():
        if line.startswith("TORCH_INFO "):
            info = json.loads(line[len("TORCH_INFO "):])
        elif line.startswith("ROW "):
            rows.append(json.loads(line[4:]))
    if proc.returncode != 0 or info is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        rows.append({"library": "torchvision", "precision": "-", "compiler": "-",
                     "error": f"child exited with {proc.returncode}: {tail[0][:150]}"})
    return info, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any machine (CPU dry run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16",
                        help="frcnn_lib (Keras) policies")
    parser.add_argument("--xla", default="on,off")
    parser.add_argument("--torch-precisions", default="float32,amp_float16,amp_bfloat16")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="the Python that has torch + torchvision (default: this one)")
    parser.add_argument("--torch-timeout", type=int, default=1800)
    parser.add_argument("--skip", choices=("frcnn", "torchvision"), help="run one half only")
    parser.add_argument("--roi", choices=("roi_pool", "roi_align"), default="roi_pool")
    parser.add_argument("--_torch-half", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = dict(G.SMOKE if args.smoke else G.FULL)
    if args.repeats:
        cfg["steps"] = args.repeats
    if args._torch_half:
        return torch_half(args, cfg)

    rows, devices, versions = [], [], []
    if args.skip != "torchvision":  # torch first: the TF half then has the GPU to itself
        info, torch_rows = run_torch_child(args)
        if info:
            devices.append(info["device"])
            versions.append(info["versions"])
    else:
        torch_rows = []
    if args.skip != "frcnn":
        cfg_tf = dict(cfg, frcnn={**cfg["frcnn"], "roi_pooling": args.roi})
        info = G.tf_versions()
        devices.append(info["device"])
        versions.append(info["versions"])
        xla = [{"on": True, "off": False}[x] for x in args.xla.split(",")]
        rows += G.frcnn_rows(args.precisions.split(","), xla, cfg_tf)
    rows += torch_rows
    h, w = cfg["size"]
    print("\n## " + G.header(" / ".join(dict.fromkeys(devices)), "; ".join(versions), args.smoke))
    print(f"vgg16 Faster R-CNN, {h}x{w} (padded to multiples of 32), batch {cfg['batch']}, {args.roi} 7x7, "
          f"median of {cfg['steps']} calls after {cfg['warmup']} warm-up; float32 rows: TF32 allowed "
          f"on both (TensorFlow's default)")
    print(G.rate_table(rows))
    ok = [r for r in rows if "error" not in r]
    best = {lib: max((r for r in ok if r["library"] == lib), key=lambda r: r["train_images_per_s"], default=None)
            for lib in ("frcnn_lib (Keras/TF)", "torchvision")}
    parts = [f"{lib}: best training {r['train_images_per_s']:.2f} images/s ({r['precision']}, {r['compiler']}), "
             f"inference {r['infer_images_per_s']:.2f}" for lib, r in best.items() if r]
    if all(best.values()):
        a, b = best["frcnn_lib (Keras/TF)"], best["torchvision"]
        parts.append(f"frcnn_lib / torchvision training {a['train_images_per_s'] / b['train_images_per_s']:.2f}x")
    failed = [f"{r['library']} {r['precision']}/{r['compiler']}" for r in rows if "error" in r]
    print("SUMMARY gpu_vs_torchvision: " + "; ".join(parts) + (f"; failed: {', '.join(failed)}" if failed else "")
          + (" [smoke]" if args.smoke else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main() or 0)
