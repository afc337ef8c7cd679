"""csc_viewer: neuroglancer views and browser-free montages of every pipeline volume."""

__version__ = "0.1.0"
