"""csc_common: the one shared core of the csc stages.

Stages never import each other; whatever two of them must agree on (geometry,
manifests, zarr layout, the class table, errors, logging, CLI plumbing) lives
here once.
"""

__version__ = "0.1.0"
