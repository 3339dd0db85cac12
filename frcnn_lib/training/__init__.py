"""Training machinery: everything between a preset and a trained ``FasterRCNN``.

- ``runs``: what ``frcnn train``, ``frcnn evaluate`` and ``frcnn demo`` do (a run folder in, a
  model and a history out);
- ``presets``: the named configurations, with the sources of their values;
- ``optimizers``, ``schedules``, ``precision``, ``distribute``: how a step is taken;
- ``checkpoints``, ``finetune``: what survives a crash, a resume or a change of classes;
- ``anchor_fit``: anchors and image size fitted to a dataset's boxes (``frcnn anchors``).

Nothing is imported here, so that ``frcnn --help`` can read ``precision`` without TensorFlow.
"""
