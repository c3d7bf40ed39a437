"""Export of trained Keras models to self-describing ONNX files (needs the [train] extra)."""
