"""csc_trainer: train 2d/3d u-nets on cellmap crops with a masked multi-class loss."""

__version__ = "0.1.0"
