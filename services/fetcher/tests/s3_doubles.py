"""Test doubles for S3: a local S3 server (moto), uploads, and a fault-injecting HTTP proxy.

Used by the fetcher's tests, the container tests and ``make bench-fetch``
(which put this folder on ``sys.path``); never by the stage itself, so it
does not ship in the package. The proxy sits between boto3 and the S3 server and, per request, can
add latency, answer 503 SlowDown, stall past the client's read timeout, cut a
body short or flip its bytes — the failures a real download meets. Faults are
deterministic (chosen by a hash of the path) and hit each path at most
``max_faults_per_path`` times, so a correct client always ends verified.

Run as a script to serve a proxy from another process (benchmarks)::

    python services/fetcher/tests/s3_doubles.py proxy UPSTREAM_PORT --latency 0.05
"""

import argparse
import hashlib
import http.client
import http.server
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULTS = ("slowdown", "timeout", "truncate", "corrupt")
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class FaultPlan:
    """Which fraction of paths get which fault, and how often a path may fail."""

    rates: dict[str, float] = field(default_factory=dict)  # fault -> fraction of paths
    max_faults_per_path: int = 1
    stall_s: float = 2.0  # how long a "timeout" stalls (> the client's read timeout)
    only_get: bool = True

    def pick(self, method: str, path: str) -> str | None:
        if self.only_get and method != "GET":
            return None
        h = int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "big") / 2**32
        edge = 0.0
        for name in FAULTS:
            r = self.rates.get(name, 0.0)
            if edge <= h < edge + r:
                is_listing = "list-type" in path or "prefix=" in path
                return None if (name == "corrupt" and is_listing) else name
            edge += r
        return None


class FaultProxy:
    """A threaded HTTP/1.1 proxy in front of ``upstream`` (host, port) with latency and faults."""

    def __init__(
        self, upstream: tuple[str, int], *, latency_s: float = 0.0, faults: FaultPlan | None = None, port: int = 0
    ) -> None:
        self.upstream = upstream
        self.latency_s = latency_s
        self.faults = faults or FaultPlan()
        self.log: list[tuple[str, str, str]] = []  # (method, path, outcome)
        self.injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self._count: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle  # noqa: N815

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that hang up mid-request (killed fetchers, timeouts) are expected here

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def gets(self) -> list[str]:
        """Paths of object GETs (not listings) seen so far."""
        with self._lock:
            return [p for m, p, _ in self.log if m == "GET" and "?" not in p]

    def clear(self) -> None:
        with self._lock:
            self.log.clear()

    # -- internals -----------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(*self.upstream, timeout=60)
            self._local.conn = c
        return c

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else None
        fault = self.faults.pick(method, path)
        with self._lock:
            if fault is not None:
                k = self._count.get(path, 0)
                if k >= self.faults.max_faults_per_path:
                    fault = None
                else:
                    self._count[path] = k + 1
                    self.injected[fault] += 1
            self.log.append((method, path, fault or "ok"))
        if self.latency_s:
            time.sleep(self.latency_s)
        try:
            if fault == "slowdown":
                msg = b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
                h.send_response(503)
                h.send_header("Content-Type", "application/xml")
                h.send_header("Content-Length", str(len(msg)))
                h.end_headers()
                h.wfile.write(msg)
                return
            if fault == "timeout":
                time.sleep(self.faults.stall_s)
                h.close_connection = True
                return
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP and k.lower() != "host"}
            headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
            status, rheaders, data = self._forward(method, path, headers, body)
            h.send_response(status)
            for k, v in rheaders:
                if k.lower() not in HOP and k.lower() not in ("server", "date"):
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if method == "HEAD":
                return
            if fault == "truncate" and len(data) > 1:
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "corrupt" and data:
                data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True


# ------------------------------------------------------------------------------------------------
# moto


def start_moto() -> tuple[Any, str, tuple[str, int]]:
    """A ThreadedMotoServer on 127.0.0.1 at a free port: (server, endpoint URL, (host, port))."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}", (host, port)


def s3_client(endpoint: str, *, signed: bool = True) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    cfg = Config(
        signature_version=UNSIGNED if not signed else "s3v4", s3={"addressing_style": "path"}, max_pool_connections=16
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=cfg,
    )


def upload_folder(
    endpoint: str,
    bucket: str,
    root: Path,
    *,
    skip: Iterable[str] = (".synthetic.json",),
    include: Iterable[str] | None = None,
    workers: int = 8,
) -> int:
    """Create a public-read bucket holding the files under ``root`` (keys = relative paths).

    ``include``: only keys starting with one of these prefixes.
    """
    client = s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    prefixes = tuple(include) if include is not None else ("",)
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in set(skip) and p.relative_to(root).as_posix().startswith(prefixes)
    ]

    def put(p: Path) -> None:
        client.put_object(Bucket=bucket, Key=p.relative_to(root).as_posix(), Body=p.read_bytes(), ACL="public-read")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, files))
    return len(files)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="s3_doubles.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy", help="serve a latency/fault proxy in front of 127.0.0.1:UPSTREAM_PORT")
    p.add_argument("upstream_port", type=int)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    proxy = FaultProxy(("127.0.0.1", args.upstream_port), latency_s=args.latency, port=args.port).start()
    print(proxy.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_main())
