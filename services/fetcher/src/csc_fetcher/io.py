"""Reading the crop manifests from a path or URL (file://, http(s)://, s3://).

Defaults are the challenge's published manifests on GitHub with the original's
environment overrides; nothing is ever written back into the installed package.
"""

import os
import urllib.error
import urllib.request
from pathlib import Path

from csc_common.errors import InputError

RAW = "https://raw.githubusercontent.com/janelia-cellmap/cellmap-segmentation-challenge/refs/heads/main/src/cellmap_segmentation_challenge/utils"
DEFAULTS = {
    "manifest": ("CSC_FETCH_DATA_MANIFEST_URL", f"{RAW}/manifest.csv"),
    "test_manifest": ("CSC_TEST_CROP_MANIFEST_URL", f"{RAW}/test_crop_manifest.csv"),
    "zip_manifest": ("CSC_FETCH_ZIP_DATA_MANIFEST_URL", f"{RAW}/zip_manifest.csv"),
}
DEFAULT_BUCKET = "janelia-cosem-datasets"


def default_location(which: str) -> str:
    """The env override for ``which`` manifest, else the published URL."""
    env, url = DEFAULTS[which]
    return os.environ.get(env, "").strip() or url


def read_text(location: str, *, endpoint_url: str | None = None, timeout: float = 30.0) -> str:
    """Text of a manifest at a path or URL; InputError naming the location on any failure."""
    try:
        if location.startswith(("http://", "https://")):
            with urllib.request.urlopen(location, timeout=timeout) as resp:  # noqa: S310 - user-chosen URL
                data = resp.read()
        elif location.startswith("s3://"):
            from csc_fetcher.sources import S3Source, parse_s3_url

            bucket, key = parse_s3_url(location)
            got = S3Source(bucket, endpoint_url=endpoint_url, workers=1, retry=None).get(key)
            if got is None:
                raise InputError(f"{location}: no such object")
            data = got
        else:
            path = Path(location.removeprefix("file://"))
            data = path.read_bytes()
    except InputError:
        raise
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise InputError(f"cannot read manifest {location}: {getattr(exc, 'reason', None) or exc}") from None
    except Exception as exc:  # noqa: BLE001 - S3 failures: one line
        raise InputError(f"cannot read manifest {location}: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"manifest {location} is not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"manifest {location} is empty")
    return text
