"""`make submission` end to end in containers against a local S3 server.

The server (moto on 127.0.0.1) holds the synthetic dataset in the bucket's
layout; only the endpoint, the crop manifests and the training length are
overridden, everything else is the real-data recipe of the Makefile.
"""

import subprocess
import zipfile
from pathlib import Path

import pytest
from csc_common.crops import read_crop_manifest
from csc_common.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from csc_fetcher import synthetic
    from s3_doubles import start_moto, upload_folder

    root = tmp_path_factory.mktemp("bucket") / "bucket"
    synthetic.generate(root, seed=0, size="tiny")
    server, endpoint, _ = start_moto()
    upload_folder(endpoint, synthetic.BUCKET_NAME, root, include=("syn_", "manifest.csv", "test_crop_manifest.csv"))
    try:
        yield endpoint, f"s3://{synthetic.BUCKET_NAME}"
    finally:
        server.stop()


def test_make_submission_in_containers(docker, stale_images, s3, tmp_path):
    endpoint, bucket = s3
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    fetch_args = (
        f"--endpoint-url {endpoint} --manifest {bucket}/manifest.csv --test-manifest {bucket}/test_crop_manifest.csv"
    )
    run = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "submission",
            f"DATA={data}",
            "FETCH_NETWORK=host",
            f"FETCH_ARGS={fetch_args}",
            "TRAIN_ARGS=--iterations 40 --threads 2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for name, kind in [
        ("dataset.json", "dataset"),
        ("predictions.json", "predictions"),
        ("processed.json", "processed"),
        ("submission.json", "submission"),
    ]:
        m = read_manifest(data / name, kind)
        assert m["producer"]["image"], f"{name} was not written by a container"
    sub = read_manifest(data / "submission.json", "submission")
    rows = read_crop_manifest(data / "test_crop_manifest.csv")
    assert sub["rows"] == len(rows) and sub["packed"] == len(rows) and sub["missing"] == []
    with zipfile.ZipFile(data / "submission.zip") as zf:
        names = set(zf.namelist())
    assert ".zgroup" in names
    assert {f"{r.crop_name}/{r.class_label}/.zarray" for r in rows} <= names
