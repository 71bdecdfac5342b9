"""Conversion of trained edgecnn models to TFLite and ONNX, each verified against Keras."""
