"""csc_exporter: export a trained model to a verified, self-describing onnx file."""

__version__ = "0.1.0"
