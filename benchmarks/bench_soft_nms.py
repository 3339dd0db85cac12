"""Soft-NMS against NMS on one trained model: VOC07 mAP@0.5 and COCO-style mAP.

    python benchmarks/bench_soft_nms.py --model runs/x/model.keras --data shapes:test [--sigma 0.5]

The same weights are evaluated twice, with the model's class-wise NMS and with Gaussian
Soft-NMS (``detections_soft_nms_sigma``; Bodla et al. 2017 use sigma 0.5).
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import machine_info  # noqa: E402

from frcnn_lib import FasterRCNN, datasets  # noqa: E402
from frcnn_lib.training import checkpoints
from frcnn_lib.training import runs as training
from frcnn_lib.evaluation import evaluate_coco  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="shapes:test")
    p.add_argument("--images", type=int, default=None, help="shapes only: number of images")
    p.add_argument("--sigma", type=float, default=0.5)
    args = p.parse_args()
    kw = {"num_images": args.images} if args.images and args.data.startswith("shapes") else {}
    data = datasets.load(args.data, **kw)
    hard = checkpoints.load_model(args.model, compile=False)
    config = {**hard.get_config(), "detections_soft_nms_sigma": args.sigma}
    soft = FasterRCNN.from_config(config)
    soft.build()
    soft.set_weights(hard.get_weights())
    print(machine_info())
    print(f"{args.model} on {args.data} ({len(data)} images)")
    for name, model in (("NMS", hard), (f"Soft-NMS sigma {args.sigma:g}", soft)):
        voc, detections, seconds = training.evaluate(model, data, True, 0.5, progress=False)
        coco = evaluate_coco(detections, data.ground_truths())
        print(f"{name:22s} VOC07 mAP@0.5 {voc['mAP']:.4f}  COCO mAP@[.5:.95] {coco['AP']:.4f}  "
              f"AP50 {coco['AP50']:.4f}  {1000 * seconds:.1f} ms/image")


if __name__ == "__main__":
    main()
