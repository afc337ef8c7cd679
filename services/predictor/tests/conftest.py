"""Predictor test fixtures: the conformance fixture (tiny EM + U-Net as checkpoint and ONNX), built once."""

import shutil
import sys
from pathlib import Path

import pytest

CONFORMANCE = Path(__file__).resolve().parents[3] / "tests" / "conformance"
if str(CONFORMANCE) not in sys.path:
    sys.path.insert(0, str(CONFORMANCE))

import conformance_fixture  # noqa: E402


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared, read-only fixture folder (copy it with ``fixture_copy`` before changing anything)."""
    return conformance_fixture.build_fixture(tmp_path_factory.mktemp("predictor-fixture"))["root"]


@pytest.fixture()
def fixture_copy(fixture_root: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture for tests that break or extend it."""
    dst = tmp_path / "fx"
    shutil.copytree(fixture_root, dst)
    return dst
