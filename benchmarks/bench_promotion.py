"""What promotion costs (``frcnn_lib.course.promotion``), through ``model.train_on_batch``.

Three ``shapes_cpu`` models with the same weights (RoIAlign, so that the RoIAlign grid is a
part) train round-robin in one process on the same batch of 4:

* ``library``: nothing promoted -- the model every user trains;
* ``graph parts``: the course's reference answers (``notebooks/_tools/reference_answers.py``,
  keras.ops) for every part that runs inside the compiled step;
* ``all parts``: the same plus the learner's NMS, which runs on the host.

Prints the median step time of each and its ratio to ``library``, and, for the library model,
the number of operations in its traced training step: the figure that shows promotion costs
nothing when unused (the same count as before ``frcnn_lib.parts`` existed:
``benchmarks/README.md``).

    python benchmarks/bench_promotion.py [--repeats 20] [--quick]
"""
import argparse
import os
import sys

from _common import interleaved, machine_info, median, table  # noqa: I001

import keras
import tensorflow as tf

from bench_training import batch_data
from frcnn_lib import FasterRCNN
from frcnn_lib.training.presets import get_preset
from frcnn_lib.course.promotion import promote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "notebooks", "_tools"))
import reference_answers  # noqa: E402


def train_step_op_count(model, images, targets):
    """Operations in the graph of one traced training step (nested functions included)."""
    model.optimizer.build(model.trainable_variables)
    step = tf.function(lambda: model.train_step((images, targets)))
    graph = step.get_concrete_function().graph
    count = len(graph.get_operations())
    for function in graph._functions.values():            # while-loop bodies, conditions
        count += len(function.graph.get_operations()) if hasattr(function, "graph") else 0
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: batch 2, 1 warm-up round and 2 timed rounds")
    args = parser.parse_args()
    repeats, warmup, batch = (2, 1, 2) if args.quick else (args.repeats, 2, 4)
    settings = {**get_preset("shapes_cpu")["model"], "roi_pooling": "roi_align"}
    images, targets = batch_data(batch, (160, 160))
    keras.utils.set_random_seed(0)
    models = {"library": FasterRCNN(5, **settings)}
    graph_parts = {k: v for k, v in reference_answers.PROMOTABLE.items() if k != "nms"}
    for name, parts in (("graph parts", graph_parts), ("all parts", reference_answers.PROMOTABLE)):
        models[name] = FasterRCNN(5, **settings)
        models[name].set_weights(models["library"].get_weights())
        promote(models[name], **parts)
    for model in models.values():
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
    print(machine_info())
    print(f"operations in the library model's traced training step: "
          f"{train_step_op_count(models['library'], images, targets)}")
    fns = {name: (lambda m=m: m.train_on_batch(images, targets, return_dict=True))
           for name, m in models.items()}
    times = interleaved(fns, repeats, warmup=warmup)
    base = median(times["library"])
    rows = [[name, f"{1000 * median(times[name]):.0f}", f"{median(times[name]) / base:.2f}"]
            for name in models]
    print(table(rows, ["model", "ms / step", "/ library"]))


if __name__ == "__main__":
    main()
