"""The runtime corner: what every command and import needs, none of it Faster R-CNN.

- ``errors``: ``FrcnnError``, the one exception for bad input (also ``frcnn_lib.FrcnnError``);
- ``input_checks``: graph-side validation of what users feed the model, raised as ``FrcnnError``;
- ``quiet``: keeps TensorFlow's start-up log off stderr;
- ``progress``: progress bars on stderr;
- ``backend``: requires Keras' TensorFlow backend with a clear error.

Nothing is imported here: ``quiet`` must run before anything imports TensorFlow.
"""
