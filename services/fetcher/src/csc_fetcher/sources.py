"""Where objects come from: a local folder in bucket layout, or S3 (anonymous boto3).

Both sources speak in bucket keys (``<ds>/<ds>.zarr/recon-1/...``) and answer
the same three questions — list a prefix (key, size, MD5 ETag), get one object
verified, read one JSON document — so the copy code above them is the same
for the embedded synthetic data and the real bucket.

S3 retries are ours, not botocore's: one loop with exponential backoff and
full jitter covers throttling (503 SlowDown), 5xx, timeouts, dropped
connections, short reads and checksum mismatches alike, and every attempt
re-verifies length and (plain) MD5 ETag before the bytes are accepted.
"""

import functools
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from csc_common.errors import InputError, StageFailed

log = logging.getLogger("csc.fetch")
T = TypeVar("T")

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key, size in bytes and ETag (None where unknown)."""

    key: str
    size: int
    etag: str | None = None

    @property
    def md5(self) -> str | None:
        """The ETag when it is a plain MD5 of the content (not multipart, not encrypted)."""
        e = (self.etag or "").strip('"').lower()
        return e if _PLAIN_MD5.match(e) else None


class VerifyError(Exception):
    """Downloaded bytes do not match the object's length or MD5 (retryable)."""


def verify(data: bytes, info: ObjectInfo | None, *, content_length: int | None = None, etag: str | None = None) -> None:
    """Raise VerifyError unless ``data`` has the expected length and MD5."""
    if content_length is not None and len(data) != content_length:
        raise VerifyError(f"short read: {len(data)} of {content_length} bytes")
    if info is not None and len(data) != info.size:
        raise VerifyError(f"length {len(data)} != listed size {info.size}")
    md5 = ObjectInfo("", 0, etag).md5 if etag else (info.md5 if info else None)
    if md5 is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
        raise VerifyError("MD5 does not match the ETag")


@dataclass
class Stats:
    """Request counters, shared by the worker threads."""

    requests: int = 0
    retries: int = 0
    bytes: int = 0
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, *, requests: int = 0, retries: int = 0, nbytes: int = 0, latency_s: float = 0.0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.bytes += nbytes
            self.latency_s += latency_s


class Source(Protocol):
    """A read-only bucket."""

    name: str
    stats: Stats

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (string prefix, like S3)."""
        ...

    def get(self, key: str, info: ObjectInfo | None = None) -> bytes | None:
        """The verified bytes of ``key``; None where the object does not exist."""
        ...

    def check(self) -> None:
        """Raise InputError when the source cannot be reached at all."""
        ...


def read_json_bytes(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object (``.zattrs``, ``.zarray``...) fetched from a source; errors name ``where``."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object")
    return doc


class LocalSource:
    """A folder laid out like the bucket (the synthetic data, or a local mirror)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.name = str(self.root)
        self.stats = Stats()

    def check(self) -> None:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: source folder not found")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the folder that holds the prefix, then filter by string prefix.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.root / base
        if not top.is_dir():
            return
        self.stats.add(requests=1)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for f in sorted(filenames):
                key = f if rel_dir == "." else f"{rel_dir}/{f}"
                if key.startswith(prefix):
                    # no ETag: a local copy is verified by length (hashing would read every file twice)
                    yield ObjectInfo(key, (Path(dirpath) / f).stat().st_size)

    def get(self, key: str, info: ObjectInfo | None = None) -> bytes | None:
        p = self.root / key
        try:
            data = p.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        self.stats.add(requests=1, nbytes=len(data))
        try:
            verify(data, info)
        except VerifyError as exc:
            raise StageFailed(f"{p}: {exc} (changed while fetching?)") from None
        return data


def _md5_file(p: Path, piece: int = 8 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(p, "rb") as fh:
        while block := fh.read(piece):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# S3

RETRYABLE_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "503", "500", "502", "504", "BadGateway", "GatewayTimeout",
}  # fmt: skip


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: sleep U(0, min(cap, base * 2**attempt))."""

    attempts: int = 8
    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


class S3Source:
    """An S3 bucket read anonymously (UNSIGNED) through one shared, thread-safe boto3 client."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        workers: int = 32,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.name = f"s3://{bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        self.retry = retry or RetryPolicy()
        self.stats = Stats()
        config = Config(
            signature_version=UNSIGNED,
            max_pool_connections=max(workers, 1) + 4,  # pool >= workers: no thread waits for a socket
            retries={"total_max_attempts": 1},  # our own loop retries, with verification
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            region_name=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
        )
        self.client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)

    # -- retry loop --------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T], *, attempts: int | None = None) -> T:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        n = attempts or self.retry.attempts
        for attempt in range(n):
            t0 = time.perf_counter()
            try:
                out = fn()
                self.stats.add(requests=1, latency_s=time.perf_counter() - t0)
                return out
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code = str(err.get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in ("NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidBucketName"):
                    raise InputError(f"{self.name}: {code}: {err.get('Message', '')} ({what})") from None
                if code not in RETRYABLE_CODES and not (500 <= int(status or 0) < 600):
                    raise StageFailed(f"{self.name}/{what}: {code} {err.get('Message', '')}") from None
                reason = f"{code or status}"
            except EndpointConnectionError as exc:
                reason = f"cannot connect ({exc})"
            except (BotoCoreError, VerifyError, OSError, ValueError) as exc:
                # timeouts, dropped connections, short reads (IncompleteRead / ResponseStreamingError),
                # urllib3 protocol errors surface here; all are worth another try.
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # urllib3 ProtocolError and friends are not all OSError
                if type(exc).__module__.split(".")[0] not in ("urllib3", "http"):
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            self.stats.add(requests=1, retries=1, latency_s=time.perf_counter() - t0)
            if attempt + 1 < n:
                d = self.retry.delay(attempt)
                log.debug("%s: %s; retry %d/%d in %.2fs", what, reason, attempt + 1, n - 1, d)
                time.sleep(d)
        raise StageFailed(f"{self.name}/{what}: gave up after {n} attempts ({reason})")

    def check(self) -> None:
        """Fail fast (exit 2) on an unreachable endpoint or a missing bucket."""
        try:
            self._call("list", lambda: self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1), attempts=2)
        except StageFailed as exc:
            raise InputError(f"cannot reach {self.name}: {str(exc).split(': ', 1)[-1]}") from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page: dict[str, Any] = self._call(f"list {prefix}", functools.partial(self.client.list_objects_v2, **kw))
            for o in page.get("Contents", []):
                yield ObjectInfo(o["Key"], int(o["Size"]), o.get("ETag"))
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def get(self, key: str, info: ObjectInfo | None = None) -> bytes | None:
        from botocore.exceptions import ClientError

        def once() -> bytes | None:
            try:
                resp = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            verify(data, info, content_length=resp.get("ContentLength"), etag=resp.get("ETag"))
            return data

        data = self._call(key, once)
        if data is not None:
            self.stats.add(nbytes=len(data))
        return data

    def download_file(
        self, key: str, dest: Path, *, on_bytes: Callable[[int], None] | None = None, piece: int = 8 << 20
    ) -> int:
        """Stream one (possibly huge) object to ``dest`` via a ``.part`` file, resuming a previous part.

        Verified by length, and by MD5 where the ETag is a plain MD5. Returns the size.
        """
        head = self._call(f"head {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        size = int(head["ContentLength"])
        info = ObjectInfo(key, size, head.get("ETag"))
        if dest.is_file() and dest.stat().st_size == size:
            return size
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        if on_bytes and have:
            on_bytes(have)
        while have < size:
            end = min(size, have + piece) - 1
            rng = f"bytes={have}-{end}"

            def fetch(rng: str = rng, n: int = end - have + 1) -> bytes:
                resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=rng)
                data = resp["Body"].read()
                if len(data) != n:
                    raise VerifyError(f"short read: {len(data)} of {n} bytes")
                return data

            data = self._call(f"{key} {rng}", fetch)
            with open(part, "ab") as fh:
                fh.write(data)
            have += len(data)
            if on_bytes:
                on_bytes(len(data))
        if info.md5 is not None and _md5_file(part) != info.md5:
            part.unlink()
            raise StageFailed(f"{self.name}/{key}: MD5 of the download does not match the ETag; rerun to retry")
        os.replace(part, dest)
        return size


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not url.startswith("s3://"):
        raise InputError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise InputError(f"s3 URL without a bucket: {url!r}")
    return bucket, key
