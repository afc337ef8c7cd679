"""The fetcher image over the network: it downloads the synthetic dataset in the bucket layout
from a local S3 server (moto on 127.0.0.1, reached with `--network host`, as
`make fetch RUNNER=docker FETCH_NETWORK=host` does) and writes exactly what the in-process
fetch of the same bucket writes."""

from pathlib import Path

import pytest
from csc_common.manifest import read_manifest

DS = "syn_iso-1"


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    from csc_fetcher import synthetic

    root = tmp_path_factory.mktemp("bucket") / "bucket"
    synthetic.generate(root, seed=0, size="tiny")
    return root


@pytest.fixture(scope="module")
def moto(bucket):
    from csc_fetcher import synthetic
    from s3_doubles import start_moto, upload_folder

    server, endpoint, _ = start_moto()
    upload_folder(endpoint, synthetic.BUCKET_NAME, bucket, include=(f"{DS}/", "manifest.csv", "test_crop_manifest.csv"))
    try:
        yield endpoint
    finally:
        server.stop()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and ".synthetic-bucket" not in p.parts
        and p.name != "dataset.json"
        and p.parts[len(root.parts)] != "ground_truth.zarr"
    }


def test_fetcher_image_downloads_from_s3_like_the_local_fetch(run_image, moto, bucket, tmp_path):
    from csc_fetcher import synthetic
    from csc_fetcher.cli import main

    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    m = f"s3://{synthetic.BUCKET_NAME}"
    run = run_image(
        "fetcher",
        [
            "--source",
            "s3",
            "--endpoint-url",
            moto,
            "--dest",
            "/data",
            "--output",
            "/data/dataset.json",
            "--manifest",
            f"{m}/manifest.csv",
            "--test-manifest",
            f"{m}/test_crop_manifest.csv",
            "--datasets",
            DS,
            "-w",
            "4",
        ],
        data=data,
        network="host",
    )
    assert run.returncode == 0, run.explain()
    manifest = read_manifest(data / "dataset.json", "dataset")
    assert manifest["source"].startswith(m)
    assert manifest["producer"]["image"] == "csc-fetcher:latest"

    local = tmp_path / "local"
    assert (
        main(
            [
                "--source",
                "synthetic",
                "--size",
                "tiny",
                "--bucket-dir",
                str(bucket),
                "--dest",
                str(local),
                "--datasets",
                DS,
                "-q",
            ]
        )
        == 0
    )
    assert _tree(data) == _tree(local)


def test_other_stages_have_no_network(run_image, moto):
    """Every image but the fetcher's runs with --network none: the S3 server is out of reach."""
    probe = (
        "import socket, sys, urllib.parse as u; p = u.urlparse(sys.argv[1]);\n"
        "try:\n    socket.create_connection((p.hostname, p.port), timeout=5); print('reached')\n"
        "except OSError as e:\n    print('unreachable', e)"
    )
    run = run_image("predictor", ["-c", probe, moto], entrypoint="python3")
    assert run.returncode == 0, run.explain()
    assert run.stdout.startswith("unreachable"), run.stdout
