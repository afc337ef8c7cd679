"""Fixtures shared by every test in the repository.

* ``shared_cellmap``: the real challenge CSVs, read from ``../shared/cellmap``
  next to the checkout (never committed here).
* ``synthetic_data``: one tiny synthetic dataset per test session, made by the
  fetcher exactly as ``make demo`` makes its data (``--size tiny``).
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def shared_cellmap() -> Path:
    path = Path(os.environ.get("CSC_SHARED_CELLMAP", REPO.parent / "shared" / "cellmap"))
    if not (path / "test_crop_manifest.csv").is_file():
        pytest.fail(f"{path}: the challenge CSVs (../shared/cellmap) are missing; set CSC_SHARED_CELLMAP")
    return path


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the dataset manifest of a tiny synthetic dataset (fetched through the fetcher)."""
    from csc_fetcher.cli import main

    dest = tmp_path_factory.mktemp("synthetic")
    out = dest / "dataset.json"
    rc = main(
        [
            "--source",
            "synthetic",
            "--size",
            "tiny",
            "--raw-padding",
            "16",
            "--dest",
            str(dest),
            "--output",
            str(out),
            "-q",
        ]
    )
    assert rc == 0 and out.is_file(), "synthetic fetch failed"
    return out
