"""The S3 path against a real S3 protocol server (moto, public-read bucket) — no mocks of boto3.

A fault-injecting proxy between boto3 and moto adds latency, 503 SlowDown,
stalls past the read timeout, truncated and corrupted bodies.
"""

import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from csc_common.manifest import read_manifest
from csc_fetcher import synthetic
from csc_fetcher.cli import main
from s3_doubles import FaultPlan, FaultProxy, s3_client, start_moto, upload_folder

pytestmark = pytest.mark.slow
BUCKET = synthetic.BUCKET_NAME
DS = "syn_iso-1"


@pytest.fixture(scope="module")
def moto(tiny_bucket: Path) -> Iterator[tuple[str, tuple[str, int]]]:
    server, endpoint, hostport = start_moto()
    # one dataset keeps uploads (and the tests) short on a 2-core machine
    upload_folder(endpoint, BUCKET, tiny_bucket, include=("syn_iso-1/", "manifest.csv", "test_crop_manifest.csv"))
    try:
        yield endpoint, hostport
    finally:
        server.stop()


def _s3(endpoint: str, dest: Path, *extra: str) -> int:
    m = f"s3://{BUCKET}"
    return main(
        [
            "--source",
            "s3",
            "--endpoint-url",
            endpoint,
            "--dest",
            str(dest),
            "--output",
            str(dest / "dataset.json"),
            "--manifest",
            f"{m}/manifest.csv",
            "--test-manifest",
            f"{m}/test_crop_manifest.csv",
            "--datasets",
            DS,
            "-w",
            "8",
            "-q",
            *extra,
        ]
    )


def _local(tiny_bucket: Path, dest: Path, *extra: str) -> Path:
    assert (
        main(
            [
                "--source",
                "synthetic",
                "--size",
                "tiny",
                "--bucket-dir",
                str(tiny_bucket),
                "--dest",
                str(dest),
                "--datasets",
                DS,
                "-q",
                *extra,
            ]
        )
        == 0
    )
    return dest


def _tree(root: Path, *, skip_truth: bool = True) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and ".synthetic-bucket" not in p.parts
        and p.name != "dataset.json"
        and not (skip_truth and p.parts[len(root.parts)] == "ground_truth.zarr")
    }


@pytest.fixture(scope="module")
def local_iso(tmp_path_factory: pytest.TempPathFactory, tiny_bucket: Path) -> Path:
    """The same dataset fetched through the local source: what every S3 fetch must reproduce."""
    return _local(tiny_bucket, tmp_path_factory.mktemp("local"))


def test_s3_fetch_equals_local_fetch(moto: tuple[str, tuple[str, int]], tmp_path: Path, local_iso: Path) -> None:
    endpoint, _ = moto
    dest = tmp_path / "d"
    assert _s3(endpoint, dest) == 0  # manifests read over s3:// too
    assert _tree(dest) == _tree(local_iso)
    a = read_manifest(dest / "dataset.json", "dataset")
    b = read_manifest(local_iso / "dataset.json", "dataset")
    assert a["crops"] == b["crops"] and a["datasets"] == b["datasets"]
    assert a["source"].startswith(f"s3://{BUCKET}") and "truth" not in a.data


def test_s3_selection_and_padding_clipped_at_the_edge(
    moto: tuple[str, tuple[str, int]], tmp_path: Path, tiny_bucket: Path
) -> None:
    endpoint, _ = moto
    dest = tmp_path / "d"
    assert (
        _s3(
            endpoint,
            dest,
            "--crops",
            "102",
            "--classes",
            "ecs",
            "--datasets",
            "syn_iso-1",
            "--raw-padding",
            "1000",
            "--fetch-all-em-resolutions",
        )
        == 0
    )
    em = "syn_iso-1/syn_iso-1.zarr/recon-1/em/fibsem-uint8"
    for level in ("s0", "s1", "s2"):  # padding larger than the volume: every chunk, nothing beyond
        src = {p.relative_to(tiny_bucket).as_posix() for p in (tiny_bucket / em / level).glob("*/*/*")}
        got = {p.relative_to(dest).as_posix() for p in (dest / em / level).glob("*/*/*")}
        assert got == src
    crop = dest / "syn_iso-1/syn_iso-1.zarr/recon-1/labels/groundtruth/crop102"
    assert sorted(p.name for p in crop.iterdir() if p.is_dir()) == ["ecs"]
    assert not (dest / "syn_aniso-1").exists()


def test_faults_still_end_verified(moto: tuple[str, tuple[str, int]], tmp_path: Path, tiny_bucket: Path) -> None:
    _, upstream = moto
    plan = FaultPlan(rates={"slowdown": 0.12, "timeout": 0.06, "truncate": 0.12, "corrupt": 0.12}, stall_s=1.0)
    crops = ("--crops", "101,901")
    with FaultProxy(upstream, faults=plan) as proxy:
        dest = tmp_path / "d"
        assert _s3(proxy.url, dest, "--timeout", "0.4", "--retries", "6", *crops) == 0
    assert all(proxy.injected[f] > 0 for f in ("slowdown", "timeout", "truncate", "corrupt")), proxy.injected
    assert _tree(dest) == _tree(_local(tiny_bucket, tmp_path / "want", *crops))
    counts = read_manifest(dest / "dataset.json", "dataset")["counts"]
    assert counts["retries"] >= sum(proxy.injected.values()) - proxy.injected["corrupt"] // 2


def test_a_manifest_read_that_keeps_failing_is_retryable_and_honours_retries(
    moto: tuple[str, tuple[str, int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, upstream = moto
    always = FaultPlan(rates={"slowdown": 1.0}, max_faults_per_path=1000)  # every GET answers 503 SlowDown
    dest = tmp_path / "d"
    with FaultProxy(upstream, faults=always) as proxy:
        rc = _s3(proxy.url, dest, "--retries", "3")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith(f"csc-fetch: error: s3://{BUCKET} at {proxy.url}/manifest.csv: gave up after 3 attempts")
    assert proxy.gets() == [f"/{BUCKET}/manifest.csv"] * 3
    assert not dest.exists()


def test_killed_then_rerun_is_identical_and_refetches_nothing_complete(
    moto: tuple[str, tuple[str, int]], tmp_path: Path, tiny_bucket: Path
) -> None:
    _, upstream = moto
    dest = tmp_path / "d"
    crops = ("--crops", "101,102,901")
    with FaultProxy(upstream, latency_s=0.02) as proxy:
        cmd = [
            sys.executable,
            "-m",
            "csc_fetcher",
            "--source",
            "s3",
            "--endpoint-url",
            proxy.url,
            "--dest",
            str(dest),
            "--manifest",
            f"s3://{BUCKET}/manifest.csv",
            "--test-manifest",
            f"s3://{BUCKET}/test_crop_manifest.csv",
            "--datasets",
            DS,
            *crops,
            "-w",
            "1",
            "-q",
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(1 for _ in dest.rglob("s0/*/*/*")) >= 12:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()[-500:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (dest / "dataset.json").exists()
        complete = {
            p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and not p.name.endswith(".csc-part")
        }
        assert complete
        proxy.clear()
        assert _s3(proxy.url, dest, *crops, "-w", "4") == 0
        refetched = {g.split("?")[0].removeprefix(f"/{BUCKET}/") for g in proxy.gets()}
    # metadata documents are re-read to plan; no complete chunk (data object) is fetched again
    chunks = {k for k in complete if not k.rsplit("/", 1)[-1].startswith(".") and "/s" in k}
    assert chunks and not (chunks & refetched), sorted(chunks & refetched)[:5]
    assert _tree(dest) == _tree(_local(tiny_bucket, tmp_path / "want", *crops))


def test_missing_chunk_key_means_fill_value(
    moto: tuple[str, tuple[str, int]], tmp_path: Path, tiny_bucket: Path
) -> None:
    endpoint, _ = moto
    holes = "csc-holes"
    upload_folder(
        endpoint,
        holes,
        tiny_bucket,
        include=(
            "syn_iso-1/syn_iso-1.zarr/recon-1/em/",
            "syn_iso-1/syn_iso-1.zarr/recon-1/labels/groundtruth/crop101/",
        ),
    )
    key = "syn_iso-1/syn_iso-1.zarr/recon-1/em/fibsem-uint8/s0/1/1/1"
    s3_client(endpoint).delete_object(Bucket=holes, Key=key)
    man = tmp_path / "manifest.csv"
    man.write_text((tiny_bucket / "manifest.csv").read_text().replace(f"s3://{BUCKET}/", f"s3://{holes}/"))
    dest = tmp_path / "d"
    assert (
        main(
            [
                "--source",
                "s3",
                "--endpoint-url",
                endpoint,
                "--dest",
                str(dest),
                "--manifest",
                str(man),
                "--test-manifest",
                str(tiny_bucket / "test_crop_manifest.csv"),
                "--crops",
                "101",
                "--raw-padding",
                "64",
                "-q",
            ]
        )
        == 0
    )
    counts = read_manifest(dest / "dataset.json", "dataset")["counts"]
    assert counts["missing_chunks"] == 1
    assert not (dest / key).exists()
    arr = zarr.open_array(str(dest / key.rsplit("/", 3)[0]), mode="r")
    assert np.all(arr[16:32, 16:32, 16:32] == 0) and arr[0:16, 0:16, 0:16].any()


def test_zip_download(
    moto: tuple[str, tuple[str, int]], tmp_path: Path, tiny_bucket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, _ = moto
    z = tmp_path / "matched_res_no_pad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("syn_iso-1/hello.txt", "x" * 5000)
    s3_client(endpoint).put_object(
        Bucket=BUCKET, Key="csc-zipped-data/matched_res_no_pad.zip", Body=z.read_bytes(), ACL="public-read"
    )
    zm = tmp_path / "zip_manifest.csv"
    zm.write_text(
        f"all_res,raw_padding,file,url\nFalse,0,matched_res_no_pad.zip,s3://{BUCKET}/csc-zipped-data/"
        "matched_res_no_pad.zip\nTrue,128,all_res_128_pad.zip,s3://x/all_res_128_pad.zip\n"
    )
    dest = tmp_path / "d"
    args = [
        "--source",
        "s3",
        "--endpoint-url",
        endpoint,
        "--dest",
        str(dest),
        "--zip",
        "--zip-manifest",
        str(zm),
        "--manifest",
        str(tiny_bucket / "manifest.csv"),
        "--test-manifest",
        str(tiny_bucket / "test_crop_manifest.csv"),
    ]
    assert main(args) == 0
    assert (dest / z.name).read_bytes() == z.read_bytes()
    capsys.readouterr()
    # no such zip, or a selection a zip cannot honour: the run would write nothing, so it is bad input
    for extra, expected in (
        (["--raw-padding", "16"], "no zip for all_res=False raw_padding=16"),
        (["--crops", "101"], "--zip works only with --crops all"),
        (["--classes", "mito"], "--classes 'mito' would be ignored with --zip"),
    ):
        assert main([*args, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


def test_unreachable_endpoint_and_missing_bucket_exit_2(
    tmp_path: Path, tiny_bucket: Path, moto: tuple[str, tuple[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    dest = tmp_path / "d"
    common = [
        "--source",
        "s3",
        "--dest",
        str(dest),
        "--manifest",
        str(tiny_bucket / "manifest.csv"),
        "--test-manifest",
        str(tiny_bucket / "test_crop_manifest.csv"),
    ]
    assert main([*common, "--endpoint-url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("csc-fetch: error: cannot reach s3://") and str(port) in err[0]
    assert not dest.exists()
    man = tmp_path / "m.csv"
    man.write_text((tiny_bucket / "manifest.csv").read_text().replace(f"s3://{BUCKET}/", "s3://no-such-bucket/"))
    assert (
        main(
            [
                *common[:-4],
                "--manifest",
                str(man),
                "--test-manifest",
                str(tiny_bucket / "test_crop_manifest.csv"),
                "--crops",
                "101",
                "--endpoint-url",
                moto[0],
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NoSuchBucket" in err[0], err
    assert not dest.exists()


def test_real_manifests_crops_test_against_a_stub_bucket(
    moto: tuple[str, tuple[str, int]], tmp_path: Path, shared_cellmap: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--crops test` with the challenge's real manifests, against a bucket holding only EM metadata.

    The stub has the real bucket's name and layout (EM multiscale groups of the six test datasets, no
    chunks written), so the plan is driven by the real test crop geometry and every chunk reads as fill.
    """
    import json

    from csc_common.crops import read_crop_manifest
    from csc_common.geometry import Geometry
    from csc_common.volumes import multiscale_attrs

    endpoint, _ = moto
    rows = read_crop_manifest(shared_cellmap / "test_crop_manifest.csv")
    client = s3_client(endpoint)
    bucket = "janelia-cosem-datasets"
    client.create_bucket(Bucket=bucket)
    for ds in sorted({r.dataset for r in rows}):
        mine = [r for r in rows if r.dataset == ds]
        vs0 = min((r.geometry.voxel_size for r in mine), key=lambda v: v[1])
        stop = np.max([r.geometry.box.stop for r in mine], axis=0)
        levels = [
            (
                f"s{i}",
                Geometry(
                    tuple(v * 2**i for v in vs0),
                    (0.0, 0.0, 0.0),
                    tuple(int(s // (v * 2**i)) + 8 for s, v in zip(stop, vs0, strict=True)),
                ),
            )
            for i in range(6)
        ]
        key = f"{ds}/{ds}.zarr/recon-1/em/fibsem-uint8"
        docs = {f"{key}/.zgroup": {"zarr_format": 2}, f"{key}/.zattrs": multiscale_attrs(levels)}
        for p, g in levels:
            docs[f"{key}/{p}/.zarray"] = {
                "zarr_format": 2,
                "shape": list(g.shape),
                "chunks": [256, 256, 256],
                "dtype": "|u1",
                "compressor": None,
                "fill_value": 0,
                "order": "C",
                "filters": None,
                "dimension_separator": "/",
            }
        for k, doc in docs.items():
            client.put_object(Bucket=bucket, Key=k, Body=json.dumps(doc).encode(), ACL="public-read")
    dest = tmp_path / "d"
    args = [
        "--source",
        "s3",
        "--endpoint-url",
        endpoint,
        "--dest",
        str(dest),
        "--crops",
        "test",
        "--manifest",
        str(shared_cellmap / "manifest.csv"),
        "--test-manifest",
        str(shared_cellmap / "test_crop_manifest.csv"),
    ]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "datasets: 6   crops: 0 train, 16 test" in out and "estimated time" in out
    assert not dest.exists()
    assert main([*args, "-q"]) == 0
    man = read_manifest(dest / "dataset.json", "dataset")
    assert sorted(c["id"] for c in man["crops"]) == sorted({r.crop_id for r in rows})
    assert all(c["split"] == "test" for c in man["crops"]) and man["counts"]["missing_chunks"] > 0
    assert read_crop_manifest(dest / "test_crop_manifest.csv") == rows
    c557 = next(c for c in man["crops"] if c["id"] == 557)
    assert c557["em_levels"] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    c984 = next(c for c in man["crops"] if c["id"] == 984)  # 32 nm only: finer EM levels skipped
    assert c984["em_levels"] == ["s3", "s4", "s5"]
