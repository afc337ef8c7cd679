"""csc_predictor: onnx runtime sliding-window inference over test crops and whole volumes."""

__version__ = "0.1.0"
