"""Fixtures of the fetcher tests: a generated tiny synthetic bucket and one fetch of it.

The real challenge CSVs come from the root conftest's ``shared_cellmap`` fixture.
This folder goes on ``sys.path`` so the tests import the S3 test doubles
(``s3_doubles``) beside them.
"""

import sys
from pathlib import Path

import pytest
from csc_fetcher import synthetic
from csc_fetcher.cli import main

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session")
def tiny_bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bucket") / "bucket"
    synthetic.generate(root, seed=0, size="tiny")
    return root


@pytest.fixture(scope="session")
def fetched_tiny(tmp_path_factory: pytest.TempPathFactory, tiny_bucket: Path) -> Path:
    """A full fetch (all crops, all classes) of the tiny bucket; returns the dest folder."""
    dest = tmp_path_factory.mktemp("fetched")
    rc = main(
        [
            "--source",
            "synthetic",
            "--size",
            "tiny",
            "--bucket-dir",
            str(tiny_bucket),
            "--dest",
            str(dest),
            "--output",
            str(dest / "dataset.json"),
            "-q",
        ]
    )
    assert rc == 0
    return dest
