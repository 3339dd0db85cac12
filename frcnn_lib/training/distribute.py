"""Training on several devices or machines: ``frcnn train --strategy``.

Shape glossary: ``B`` the global batch (all replicas of one step), ``b = B / replicas`` one
replica's batch.

Three strategies (``tf.distribute``):

- ``default``: one device (TensorFlow's default strategy).
- ``mirrored``: every local GPU (``MirroredStrategy()``; on a CPU-only machine, the CPU).
- ``multiworker``: ``MultiWorkerMirroredStrategy`` over the machines listed in the
  ``TF_CONFIG`` environment variable, each running the same ``frcnn train`` command::

      TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                  "task": {"type": "worker", "index": 0}}'

  Worker 0 is the chief (unless the cluster names a ``chief`` task).

What changes under ``multiworker`` (see :func:`training_input` and :func:`run_folder`):

- **Input**: each worker reads only its own shard of the images -- records
  ``worker, worker + W, worker + 2W, ...`` of the dataset for ``W`` workers (an explicit
  shard of the record list, so no worker decodes another's images; ``tf.data``'s
  auto-sharding is bypassed by ``distribute_datasets_from_function``) -- in batches of
  ``b``, so one step trains on ``B`` images in all.  Shards are shuffled and flipped
  with per-worker seeds.
- **Output**: only the chief writes the run folder (checkpoints, history, model.keras).
  The other workers train the same weights and write to a temporary folder that is deleted
  at the end (the convention of Keras' ``ModelCheckpoint``/``BackupAndRestore`` under
  ``tf.distribute``), so two machines sharing a file system never write the same file.
- **Resume**: every worker loads ``OUT/checkpoints`` (the chief's; ``OUT`` must be on a
  file system all workers see), so all continue from the same weights and step.
"""
import contextlib
import json
import os
import shutil
import tempfile

from frcnn_lib.runtime.errors import FrcnnError

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name):
    """The ``tf.distribute`` strategy called ``name`` (one of :data:`STRATEGIES`).

    ``multiworker`` reads ``TF_CONFIG`` and must be created before any other TensorFlow
    work in the process (TensorFlow's rule for collective ops).
    """
    if name not in STRATEGIES:
        raise FrcnnError(f"--strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    if name == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG"))  # before TensorFlow loads: fail fast
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def check_tf_config(text):
    """Fail with one line on a missing or malformed ``TF_CONFIG`` (before TensorFlow does)."""
    if not text:
        raise FrcnnError("--strategy multiworker: the TF_CONFIG environment variable is not set; "
                         "expected JSON like {\"cluster\": {\"worker\": [\"host0:port\", "
                         "\"host1:port\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise FrcnnError(f"TF_CONFIG: not a valid cluster description ({type(err).__name__}: "
                         f"{err}); expected keys cluster.worker (a list of host:port) and "
                         f"task.type, task.index") from None
    members = config["cluster"].get(kind)
    if not isinstance(workers, list) or not workers or not isinstance(members, list) \
            or not 0 <= index < len(members):
        raise FrcnnError(f"TF_CONFIG: task {kind} {index} is not in the cluster "
                         f"{json.dumps(config['cluster'])}")
    return config


def num_workers(strategy):
    """Number of input pipelines (machines) of ``strategy``: 1 unless multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def is_chief(strategy):
    """True for the task that writes files: the ``chief`` task, else worker 0, else the only one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    kind, index = resolver.task_type, resolver.task_id
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict()


@contextlib.contextmanager
def run_folder(out, strategy):
    """``out`` on the chief; a fresh temporary folder, deleted on exit, on other workers."""
    if is_chief(strategy):
        yield out
        return
    folder = tempfile.mkdtemp(prefix="frcnn-worker-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def training_input(strategy, data, model, batch_size, seed=0, scale_jitter=None, photometric=0.0):
    """The training input for ``fit``: a plain ``tf.data.Dataset`` of global batches ``B``
    on one machine; across machines a distributed dataset in which worker ``i`` reads
    records ``i::W`` in batches of ``b = B / replicas`` (``B`` must divide evenly).
    ``scale_jitter``, ``photometric``: the pipeline's augmentation (``make_dataset``)."""
    from frcnn_lib.datasets.pipeline import make_dataset

    s = model.settings
    kwargs = dict(training=True, min_side=s["image_min_side"], max_side=s["image_max_side"],
                  shuffle=True, flip=True, repeat=True, scale_jitter=scale_jitter,
                  photometric=photometric,
                  max_boxes=data.max_boxes(use_difficult=False))  # one G for every shard
    workers = num_workers(strategy)
    if workers == 1:
        return make_dataset(data, batch_size, seed=seed, **kwargs)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise FrcnnError(f"--batch-size {batch_size}: must be a multiple of the {replicas} "
                         f"replicas of the multi-worker cluster")
    if len(data) < workers:
        raise FrcnnError(f"dataset {data.name or ''}: {len(data)} images cannot be shared by "
                         f"{workers} workers")

    def dataset_fn(context):
        index, count = context.input_pipeline_id, context.num_input_pipelines
        shard = data.subset(range(index, len(data), count))
        return make_dataset(shard, context.get_per_replica_batch_size(batch_size),
                            seed=seed + 1000 * index, **kwargs)

    return strategy.distribute_datasets_from_function(dataset_fn)


def prepare_fit(model, strategy):
    """Let ``model.fit`` run under a multi-worker ``strategy`` (no-op otherwise).

    Two workarounds for Keras 3.15's ``fit`` under ``MultiWorkerMirroredStrategy``
    (``keras/src/backend/tensorflow/trainer.py``), both on this model instance only:

    1. ``fit`` first peeks at one batch and all-reduces it with ``strategy.reduce`` only
       to learn its shapes (``_maybe_symbolic_build``), which refuses a nested batch such
       as ``(images, {"boxes": ..., "labels": ...})`` ("Attempt to convert a value
       (PerReplica...) to a Tensor").  The model needs no shapes from data (``build()``
       creates every weight), so build it here and let that step only build the optimizer.
    2. Each step's logs are then reduced across workers by ``strategy.reduce("MEAN", v,
       axis=0)`` (``reduce_per_replica``), which fails on scalars ("Invalid reduction
       dimension 0 for input with 0 dimensions") -- and every Keras metric result is a
       scalar.  The train step returns each log as shape ``(1,)`` instead, so that reduce
       gives the mean of the workers' values, a scalar again.
    """
    if num_workers(strategy) == 1:
        return
    model.build()

    def build_without_peeking(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)  # every layer built: optimizer only

    model._maybe_symbolic_build = build_without_peeking

    import tensorflow as tf

    train_step = model.train_step

    def train_step_with_vector_logs(data):
        return {name: tf.reshape(value, [1]) for name, value in train_step(data).items()}

    model.train_step = train_step_with_vector_logs
