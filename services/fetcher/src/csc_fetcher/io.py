"""Reading the crop manifests from a path or URL (file://, http(s)://, s3://).

Defaults are the challenge's published manifests on GitHub with the original's
environment overrides; nothing is ever written back into the installed package.
"""

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from csc_common.errors import CscError, InputError, StageFailed

from csc_fetcher.sources import RetryPolicy, S3Source, parse_s3_url

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


def read_text(
    location: str, *, endpoint_url: str | None = None, timeout: float = 30.0, retry: RetryPolicy | None = None
) -> str:
    """Text of a manifest at a path or URL (file://, http(s)://, s3://).

    Bad input (no such file or object, an HTTP 4xx, an unreachable host, not UTF-8)
    is an InputError naming the location (exit 2). A read that keeps failing for a
    reason worth retrying (HTTP 5xx/429, S3 throttling, timeouts) is retried with
    ``retry`` (``--retries`` attempts) and then a StageFailed (exit 1).
    """
    retry = retry or RetryPolicy()
    try:
        if location.startswith(("http://", "https://")):
            data = _http_get(location, timeout=timeout, retry=retry)
        elif location.startswith("s3://"):
            bucket, key = parse_s3_url(location)
            got = S3Source(bucket, endpoint_url=endpoint_url, workers=1, retry=retry, read_timeout=timeout).get(key)
            if got is None:
                raise InputError(f"{location}: no such object")
            data = got
        else:
            path = Path(location.removeprefix("file://"))
            data = path.read_bytes()
    except CscError:
        raise
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise InputError(f"cannot read manifest {location}: {getattr(exc, 'reason', None) or exc}") from None
    except Exception as exc:  # noqa: BLE001 - S3 client set-up failures: one line
        raise InputError(f"cannot read manifest {location}: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"manifest {location} is not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"manifest {location} is empty")
    return text


def _http_get(url: str, *, timeout: float, retry: RetryPolicy) -> bytes:
    """GET ``url``, retrying 5xx/429 answers and timeouts; other failures raise at once."""
    reason = ""
    for attempt in range(retry.attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - user-chosen URL
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 429 and exc.code < 500:
                raise InputError(f"cannot read manifest {url}: HTTP {exc.code} {exc.reason}") from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, TimeoutError):
                raise
            reason = "timed out"
        except TimeoutError:
            reason = "timed out"
        if attempt + 1 < retry.attempts:
            time.sleep(retry.delay(attempt))
    raise StageFailed(f"cannot read manifest {url}: gave up after {retry.attempts} attempts ({reason})")
