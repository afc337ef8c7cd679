"""csc_fetcher: download the challenge's em and ground-truth crops (s3 or the embedded synthetic dataset)."""

__version__ = "0.1.0"
