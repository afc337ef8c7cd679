"""``csc speedtest`` against a real local S3 server (moto) behind the fault proxy with injected latency."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from csc_fetcher import synthetic
from csc_fetcher.speedtest import Rate, main, suggest_workers
from s3_doubles import FaultProxy, start_moto, upload_folder

pytestmark = pytest.mark.slow
BUCKET = synthetic.BUCKET_NAME
LATENCY_S = 0.05


@pytest.fixture(scope="module")
def moto(tiny_bucket: Path) -> Iterator[tuple[str, tuple[str, int]]]:
    server, endpoint, hostport = start_moto()
    upload_folder(endpoint, BUCKET, tiny_bucket, include=("syn_iso-1/", "test_crop_manifest.csv"))
    try:
        yield endpoint, hostport
    finally:
        server.stop()


def _speedtest(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    argv = ["--endpoint-url", url, "--bucket", BUCKET, "--test-manifest", f"s3://{BUCKET}/test_crop_manifest.csv"]
    rc = main([*argv, "--dataset", "syn_iso-1", "--requests", "5", "--objects", "16", "-q", *extra])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if "--json" in extra else {"text": out})


def test_measures_injected_latency_and_parallel_rate_on_real_chunks(moto, capsys):
    _, hostport = moto
    with FaultProxy(hostport) as fast:
        rc, base = _speedtest(fast.url, capsys, "-w", "4", "--json")
    assert rc == 0
    with FaultProxy(hostport, latency_s=LATENCY_S) as slow:
        rc, res = _speedtest(slow.url, capsys, "-w", "4", "--json")
        gets = slow.gets()
    assert rc == 0
    # every request now waits 50 ms more: latency and the 1-worker rate show it
    assert res["latency_ms"]["min"] >= LATENCY_S * 1000
    assert res["latency_ms"]["median"] >= base["latency_ms"]["median"] + 0.8 * LATENCY_S * 1000
    assert res["one_worker"]["objects_s"] <= 1 / LATENCY_S
    # latency-bound: 4 workers overlap their waits
    assert res["n_workers"]["workers"] == 4 and res["speedup"] > 1.5
    assert 1 <= res["suggested_num_workers"] <= 8
    # the objects were real EM chunks of the test crop, each downloaded once
    chunk_gets = [p for p in gets if "/em/fibsem-uint8/s" in p and not p.endswith((".zarray", ".zattrs"))]
    n = res["one_worker"]["objects"] + res["n_workers"]["objects"]
    assert len(chunk_gets) == len(set(chunk_gets)) == n >= 8
    assert res["one_worker"]["bytes"] > 0 and "syn_iso-1 crop 901 s0" in res["sample"]


def test_report_and_bad_input(moto, capsys):
    endpoint, _ = moto
    rc, out = _speedtest(endpoint, capsys, "-w", "2")
    assert rc == 0
    text = out["text"]
    assert "request latency" in text and "objects/s" in text and "MB/s" in text and "--num-workers" in text
    rc = main(["--endpoint-url", endpoint, "--bucket", "no-such-bucket", "--test-manifest", f"s3://{BUCKET}/x.csv"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "x.csv" in err[0]
    rc = main(["--endpoint-url", endpoint, "--bucket", BUCKET, "--test-manifest", f"s3://{BUCKET}/test_crop_manifest.csv",
               "--dataset", "nope"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--dataset 'nope'" in err[0]
    assert main(["--objects", "1"]) == 2  # range checked before anything is read
    assert "--objects: must be >= 2" in capsys.readouterr().err


def test_unreachable_endpoint_is_one_line(tmp_path, capsys, shared_cellmap):
    rc = main(
        ["--endpoint-url", "http://127.0.0.1:9", "--test-manifest", str(shared_cellmap / "test_crop_manifest.csv")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot reach" in err[0]


def test_suggestion_from_the_two_rates():
    one = Rate(1, 10, 10_000_000, 1.0)  # 10 objects/s
    assert suggest_workers(one, Rate(32, 320, 0, 1.0))[0] == 64  # 32x: not saturated, double it
    assert suggest_workers(one, Rate(32, 80, 0, 1.0))[0] == 10  # 8x: about 8 fill the link, +25 %
    assert suggest_workers(one, Rate(32, 5, 0, 1.0))[0] == 1  # slower in parallel: one is enough
