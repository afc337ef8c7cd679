"""csc_postprocessor: threshold, connected components and watershed into semantic masks and instance labels."""

__version__ = "0.1.0"
