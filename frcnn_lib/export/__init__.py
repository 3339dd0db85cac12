"""Export: the files a trained detector is deployed as (``model.export(path, format=...)``).

Every file follows the TF Object Detection API's exported-model contract and carries the
class names (``contract``; docs/deploy.md):

- ``contract``: the raw image -> detections graph, and reading the class names back;
- ``resize``: the pipeline's resize in builtin ops (no ``ScaleAndTranslate``);
- ``savedmodel``: a SavedModel folder (``serving_default``, plus the padded ``serve``);
- ``tflite``: a LiteRT (TFLite) flatbuffer, run with ``ai_edge_litert``;
- ``onnx``: an ONNX file, converted with tf2onnx, run with onnxruntime.
"""
