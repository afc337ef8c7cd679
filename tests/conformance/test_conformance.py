"""The conformance kit on the default predictor, on ``--engine torch``, on a broken one and (opt-in) on an image."""

import sys
from pathlib import Path

import pytest
from conformance_fixture import build_fixture
from conformance_kit import check_output, check_predictor, main, ome_ngff_problems
from csc_common.geometry import Geometry
from csc_common.volumes import multiscale_attrs

HERE = Path(__file__).resolve().parent
PY = [sys.executable, "-m", "csc_predictor", "-q"]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture(tmp_path_factory.mktemp("conformance"))["root"]


def test_default_predictor_conforms(fixture: Path) -> None:
    rep = check_predictor(fixture, "default", command=PY)
    assert rep.ok, rep.text()
    assert rep.checked == 5 and rep.stats["max_abs_diff"] == 0.0


def test_torch_engine_conforms(fixture: Path) -> None:
    rep = check_predictor(fixture, "torch", command=[*PY, "--engine", "torch"])
    assert rep.ok, rep.text()
    assert rep.stats["max_abs_diff"] <= 1 / 255 + 1e-9  # same weights: at most one uint8 step apart


def test_other_tiling_still_conforms_within_tolerance(fixture: Path) -> None:
    rep = check_predictor(
        fixture, "tiling", command=[*PY, "--overlap", "0.5", "--blend", "linear", "--dtype", "float16"]
    )
    assert rep.ok, rep.text()
    assert rep.stats["max_abs_diff"] > 0


def test_broken_predictor_fails_with_a_clear_report(fixture: Path) -> None:
    rep = check_predictor(fixture, "broken", command=[sys.executable, str(HERE / "broken_predictor.py"), "geometry"])
    assert not rep.ok
    text = rep.text()
    assert "FAIL" in text
    assert (
        "crop 101 class er: manifest geometry translation [158.0, 108.0, 101.0] != expected [150.0, 100.0, 93.0]"
        in text
    )
    assert "crop 101 class mito: array shape [9, 12, 14] != expected [10, 12, 14]" in text
    assert all(line.startswith("  - crop ") for line in text.splitlines()[1:])


def test_swapped_classes_fail_the_agreement_check(fixture: Path) -> None:
    rep = check_predictor(fixture, "swapped", command=[sys.executable, str(HERE / "broken_predictor.py"), "channels"])
    assert not rep.ok
    assert any("crop 101 class mito: differs from the reference predictor" in f for f in rep.failures), rep.text()
    assert not any("geometry" in f for f in rep.failures)


def test_flat_arrays_without_ome_ngff_groups_fail(fixture: Path) -> None:
    rep = check_predictor(fixture, "flat", command=[sys.executable, str(HERE / "broken_predictor.py"), "flat"])
    assert not rep.ok
    text = rep.text()
    assert "crop 101 class mito: path 'crop101/mito' != expected 'crop101/mito/s0'" in text
    assert "crop 101 class mito: group crop101: not valid OME-NGFF 0.4: no 'multiscales' list" in text, text
    assert all(line.startswith("  - crop ") for line in text.splitlines()[1:])
    assert "mean_abs_diff" in rep.stats and rep.stats["max_abs_diff"] == 0.0  # the values themselves are right


def _ms(**change: object) -> dict:
    attrs = multiscale_attrs(
        [
            ("s0", Geometry((8.0, 8.0, 8.0), (1.5, 2.0, -3.0), (2, 3, 4))),
            ("s1", Geometry((16.0, 16.0, 16.0), (5.5, 6.0, 1.0), (1, 2, 2))),
        ],
        "mito",
    )
    attrs["multiscales"][0].update(change)
    return attrs


def test_ome_ngff_validator_accepts_ours_and_names_what_is_wrong() -> None:
    shapes = {"s0": (2, 3, 4), "s1": (1, 2, 2)}
    assert ome_ngff_problems(_ms(), shapes) == []
    good = _ms()["multiscales"][0]
    s0, s1 = good["datasets"]
    scale_only = {**s0, "coordinateTransformations": s0["coordinateTransformations"][:1]}
    assert ome_ngff_problems(_ms(datasets=[scale_only]), shapes) == []  # translation is optional
    bad = {
        "no 'multiscales'": ({}, shapes),
        "version '0.3'": (_ms(version="0.3"), shapes),
        "axes": (_ms(axes=good["axes"][::-1]), shapes),
        "types ['translation', 'scale']": (
            _ms(datasets=[{**s0, "coordinateTransformations": s0["coordinateTransformations"][::-1]}]),
            shapes,
        ),
        "is not 3 positive numbers": (
            _ms(datasets=[{**s0, "coordinateTransformations": [{"type": "scale", "scale": [8.0, 8.0]}]}]),
            shapes,
        ),
        "names no array": (_ms(), {"s0": (2, 3, 4)}),
        "has 4 dimensions": (_ms(), {"s0": (1, 2, 3, 4), "s1": (1, 2, 2)}),
        "finest level first": (_ms(datasets=[s1, s0]), shapes),
        "not a non-empty list": (_ms(datasets=[]), shapes),
    }
    for want, (attrs, sh) in bad.items():
        got = ome_ngff_problems(attrs, sh)
        assert any(want in p for p in got), (want, got)


def test_failing_command_and_missing_output_are_reported(fixture: Path) -> None:
    rep = check_predictor(fixture, "false", command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    assert not rep.ok and rep.failures[0].startswith("predictor exited 3")
    rep = check_output(fixture, fixture / "runs/nothing/predictions.json", name="nothing")
    assert not rep.ok and "manifest file not found" in rep.failures[0]


def test_kit_cli_exit_codes(fixture: Path, capsys) -> None:
    assert main(["--command", " ".join(PY), "--fixture", str(fixture), "--name", "cli"]) == 0
    assert "conformance cli: PASS" in capsys.readouterr().out
    assert (
        main(
            [
                "--command",
                f"{sys.executable} {HERE / 'broken_predictor.py'} geometry",
                "--fixture",
                str(fixture),
                "--name",
                "cli-broken",
            ]
        )
        == 1
    )
    assert "conformance cli-broken: FAIL" in capsys.readouterr().out


# Images are checked by tests/containers/test_conformance_images.py (built by .ci/run).
