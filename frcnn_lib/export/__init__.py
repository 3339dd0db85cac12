"""Export: the files a trained detector is deployed as (``model.export(path, format=...)``).

- ``tflite``: a LiteRT (TFLite) flatbuffer;
- ``onnx``: an ONNX file, converted with tf2onnx.

The SavedModel itself is Keras' ``model.export``.
"""
