"""The predictor contract kit against images: the default predictor image passes, and a
deliberately broken image (images/testing/broken-predictor: wrong geometry) fails with a report
that names crop, class and what was expected."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "tests" / "conformance"
BROKEN = "csc-predictor-broken:test"


@pytest.fixture(scope="module")
def kit():
    sys.path.insert(0, str(KIT))
    try:
        import conformance_fixture
        import conformance_kit
    finally:
        sys.path.remove(str(KIT))
    return conformance_kit, conformance_fixture


@pytest.fixture(scope="module")
def fixture_dir(kit, tmp_path_factory):
    _, conformance_fixture = kit
    root = conformance_fixture.build_fixture(tmp_path_factory.mktemp("conformance"))["root"]
    Path(root).chmod(0o777)
    return Path(root)


@pytest.fixture(scope="module")
def broken_image(docker, image_info):
    image_info("predictor")
    out = subprocess.run(
        [
            docker,
            "build",
            "-q",
            "-f",
            str(REPO / "images/testing/broken-predictor/Dockerfile"),
            "-t",
            BROKEN,
            "--build-arg",
            "PREDICTOR_IMAGE=csc-predictor:latest",
            str(KIT),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return BROKEN


def test_default_predictor_image_conforms(kit, fixture_dir, image_info):
    image_info("predictor")
    rep = kit[0].check_predictor(fixture_dir, "image-default", image="csc-predictor:latest")
    assert rep.ok, rep.text()
    assert rep.checked > 0


def test_broken_predictor_image_fails_with_a_clear_report(kit, fixture_dir, broken_image):
    rep = kit[0].check_predictor(fixture_dir, "image-broken", image=broken_image)
    assert not rep.ok
    text = rep.text()
    assert text.startswith("conformance image-broken: FAIL")
    assert any("translation" in f and "!= expected" in f for f in rep.failures), text
    assert all(line.startswith("  - crop ") for line in text.splitlines()[1:]), text


def test_make_conformance_reports_pass_and_fail(docker, image_info, broken_image, tmp_path):
    image_info("predictor")
    for image, rc, word in (("csc-predictor:latest", 0, "PASS"), (broken_image, 1, "FAIL")):
        out = subprocess.run(
            [
                sys.executable,
                str(KIT / "conformance_kit.py"),
                "--image",
                image,
                "--fixture",
                str(tmp_path / "fx"),
                "--name",
                image,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == rc, out.stdout + out.stderr
        assert f"conformance {image}: {word}" in out.stdout
