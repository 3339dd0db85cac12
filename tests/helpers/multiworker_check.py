"""One worker of a two-process ``MultiWorkerMirroredStrategy`` run; prints ``RESULT {json}``.

Run by tests/test_multiworker.py, twice at once (task index 0 and 1)::

    python multiworker_check.py --index I --ports P0,P1 --out RUN [--resume] [--epochs E]

It sets ``TF_CONFIG`` (two workers on 127.0.0.1:P0 and 127.0.0.1:P1, this one task
``I``) and runs the user path, ``frcnn train --strategy multiworker`` on 8 generated
``shapes`` images with a tiny model (``TINY`` below), global batch 4 (2 per worker), 2
steps per epoch.  Both workers get the same ``--out`` (one file system, as a cluster with
shared storage).  Around ``training.fit`` it records:

* ``read``: the shapes image ids this process decoded (the input pipeline's host reads);
* ``start_digest`` / ``end_digest``: SHA-256 of every weight of the model when ``fit``
  starts and when it returns (the same on both workers if the replicas stay in sync);
* ``iterations_start`` / ``iterations_end``: the optimizer's step counter;
* ``run_out``: the folder ``fit`` wrote to and whether it still exists afterwards.
"""
import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

# The tiny detector of tests/helpers/synthetic.py, sized for 96 px shapes images.
TINY = dict(anchor_scales=[16.0, 32.0, 64.0], rpn_channels=16, rpn_batch_size=64,
            rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=64, roi_batch_size=16,
            roi_head_units=32, image_min_side=96, image_max_side=96)


def digest(model):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ports", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    workers = [f"127.0.0.1:{p}" for p in args.ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                          "task": {"type": "worker", "index": args.index}})

    from frcnn_lib import cli
    from frcnn_lib.training import runs as training
    from frcnn_lib.datasets.records import DetectionData

    read = []
    original_read = DetectionData.read_image

    def recording_read(self, index):
        read.append(int(self.records[index].image_id))
        return original_read(self, index)

    DetectionData.read_image = recording_read

    seen = {}
    original_fit = training.fit

    def recording_fit(model, train_data, out, *rest, **kwargs):
        model.build()
        seen.update(start_digest=digest(model), run_out=out, num_images=len(train_data),
                    replicas=int(kwargs["strategy"].num_replicas_in_sync))
        optimizer = getattr(model, "optimizer", None)
        seen["iterations_start"] = int(optimizer.iterations.numpy()) if optimizer is not None else 0
        history = original_fit(model, train_data, out, *rest, **kwargs)
        seen.update(end_digest=digest(model), iterations_end=int(model.optimizer.iterations.numpy()),
                    losses=[float(v) for v in history.history["loss"]])
        return history

    training.fit = recording_fit

    argv = ["train", "--strategy", "multiworker", "--data", "shapes", "--train-images", "8",
            "--batch-size", "4", "--epochs", str(args.epochs), "--out", args.out, "--quiet"]
    argv += [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    if args.resume:
        argv.append("--resume")
    code = cli.main(argv)
    seen["run_out_exists_after"] = os.path.isdir(seen.get("run_out", ""))
    print("RESULT " + json.dumps({"exit": code, "index": args.index, "read": sorted(set(read)),
                                  **seen}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
