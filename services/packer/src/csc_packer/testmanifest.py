"""The test crop manifest: a local CSV, or the challenge's own fetched at run time.

Like the original, the default is the manifest on the challenge repository's
main branch, and ``CSC_TEST_CROP_MANIFEST_URL`` overrides that URL (any
``http(s)://``, ``file://`` URL or plain path). Unlike the original nothing
is cached inside the installed package.
"""

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from csc_common.crops import CropRow, parse_crop_manifest
from csc_common.errors import InputError

DEFAULT_URL = (
    "https://raw.githubusercontent.com/janelia-cellmap/cellmap-segmentation-challenge/refs/heads/main/"
    "src/cellmap_segmentation_challenge/utils/test_crop_manifest.csv"
)
ENV_URL = "CSC_TEST_CROP_MANIFEST_URL"


@dataclass(frozen=True)
class LoadedTestManifest:
    source: str
    sha256: str
    rows: list[CropRow]


def _read_text(source: str) -> str:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=30) as resp:  # noqa: S310 - the user's or the challenge's URL
                return resp.read().decode()
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{source}: cannot fetch the test crop manifest ({exc}); pass --test-manifest CSV"
            ) from None
    path = Path(source.removeprefix("file://"))
    try:
        return path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the test crop manifest ({exc.strerror})") from None


def load_test_manifest(source: str = "") -> LoadedTestManifest:
    """Rows of the test crop manifest at ``source`` (default: the challenge's, see module doc)."""
    src = source or os.environ.get(ENV_URL, "").strip() or DEFAULT_URL
    text = _read_text(src)
    rows = parse_crop_manifest(text, src)
    if not rows:
        raise InputError(f"{src}: the test crop manifest has no rows")
    seen: set[tuple[int, str]] = set()
    for r in rows:
        key = (r.crop_id, r.class_label)
        if key in seen:
            raise InputError(f"{src}: crop {r.crop_id} class {r.class_label} is listed twice")
        seen.add(key)
    return LoadedTestManifest(src, hashlib.sha256(text.encode()).hexdigest(), rows)
