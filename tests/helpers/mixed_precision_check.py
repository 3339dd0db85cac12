"""Build, train and run FasterRCNN under the ``mixed_float16`` policy; print JSON.

Run as a script, so that the global dtype policy never leaks into other tests.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from synthetic import make_batch, tiny_model  # noqa: E402

from frcnn_lib.training.optimizers import FusedAdam  # noqa: E402


def main():
    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    images, targets = make_batch()
    model = tiny_model()
    model.compile(optimizer=FusedAdam(1e-3))   # the library's (Keras wraps it in a LossScaleOptimizer)
    model.build()
    before = [w.copy() for w in model.get_weights()]
    features = model.backbone(images[:1])
    logs = [{k: float(v) for k, v in model.train_on_batch(images, targets, return_dict=True).items()}
            for _ in range(2)]
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    out = model.predict(images, verbose=0)
    detected = model.detect((images[0]).astype(np.uint8))
    print("RESULT " + json.dumps({
        "policy": model.dtype_policy.name,
        "feature_dtype": str(features.dtype.name),
        "variable_dtypes": sorted({str(w.dtype) for w in model.weights}),
        "optimizer": type(model.optimizer).__name__,
        "logs": logs,
        "weights_changed": int(sum(changed)), "num_weights": len(changed),
        "predict": {k: [str(v.dtype), list(v.shape)] for k, v in out.items()},
        "predict_finite": bool(all(np.all(np.isfinite(v)) for v in out.values())),
        "num_detections": out["num_detections"].tolist(),
        "detect": {k: str(v.dtype) for k, v in detected.items()},
    }))


if __name__ == "__main__":
    main()
