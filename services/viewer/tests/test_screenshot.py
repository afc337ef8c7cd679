"""Headless screenshots through neuroglancer's webdriver support (Debian chromium + chromedriver).

Deselect with ``-m "not browser"`` where chromium is not installed; `.ci/run` installs it.
"""

import shutil

import numpy as np
import pytest
from csc_viewer.cli import main
from csc_viewer.config import Config
from csc_viewer.layers import class_color, hex_to_rgb
from PIL import Image

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def _browser_installed():
    for exe in (Config.chromium, Config.chromedriver):
        if not shutil.which(exe):
            pytest.fail(f"{exe} missing: install Debian's chromium and chromium-driver, or deselect -m 'not browser'")


def _shot(tmp_path, *args: str) -> np.ndarray:
    out = tmp_path / "shot.png"
    assert main([*args, "--screenshot", str(out), "--size", "640x480", "-q"]) == 0
    img = Image.open(out)
    assert img.size == (640, 480)
    return np.asarray(img.convert("RGB")).astype(int)


def _near(rgb: np.ndarray, colour: str, tol: int = 40) -> np.ndarray:
    return np.abs(rgb - np.array(hex_to_rgb(colour))).sum(axis=-1) < tol


def test_screenshot_shows_em_truth_and_masks(demo, tmp_path):
    rgb = _shot(tmp_path, "--data", str(demo.root), "-c", "2", "-k", "em,gt", "--layout", "xy")
    saturated = (rgb.max(-1) - rgb.min(-1)) > 60
    grey = rgb[~saturated].mean(-1)
    # EM: textured grey, not the flat empty background of a view without data
    assert grey.size > 0.2 * rgb[..., 0].size and grey.std() > 15 and len(np.unique(grey)) > 30
    # mito is a segmentation layer (neuroglancer's colour per id): a big coloured disc in the middle
    assert saturated.mean() > 0.15
    h, w = saturated.shape
    assert saturated[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].all()  # the view opens on the crop
    # ecs is a coloured mask in its class colour (blended over bright EM), in the band y < 77 nm at the top
    ecs = np.array(hex_to_rgb(class_color("ecs")))
    expected = 0.4 * 210 + 0.6 * ecs  # mask shader opacity 0.6 over the bright (210) EM of the ecs
    yellow = _near(rgb, "#" + "".join(f"{int(round(c)):02x}" for c in expected), tol=30)
    assert yellow[: h // 5].sum() > 1000 and yellow[h // 2 :].sum() == 0


def test_screenshot_four_panels_with_predictions(demo, tmp_path):
    rgb = _shot(tmp_path, "-m", str(demo.predictions), "-c", "2", "-k", "em,predictions")
    reds = (rgb[..., 0] > rgb[..., 1] + 80) & (rgb[..., 0] > rgb[..., 2] + 40)
    h, w = reds.shape
    # probability shader paints mito in its colour in the xy (top left) and xz (top right) panels
    assert reds[: h // 2, : w // 2].mean() > 0.05 and reds[: h // 2, w // 2 :].mean() > 0.05


def test_screenshot_of_the_fetched_demo_data_one_per_dataset(synthetic_data, tmp_path):
    """`make demo`'s data (two datasets, one anisotropic): one picture per dataset, each showing its test crop."""
    out = tmp_path / "demo.png"
    assert (
        main(
            [
                "-m",
                str(synthetic_data),
                "-c",
                "test",
                "--screenshot",
                str(out),
                "--size",
                "480x360",
                "--layout",
                "xy",
                "-q",
            ]
        )
        == 0
    )
    shots = sorted(tmp_path.glob("demo-*.png"))
    assert [p.name for p in shots] == ["demo-syn_aniso-1.png", "demo-syn_iso-1.png"]
    for shot in shots:
        rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        saturated = (rgb.max(-1) - rgb.min(-1)) > 60
        assert saturated.mean() > 0.2, shot.name  # the test crop's truth layers are shown over the EM
        grey = rgb[~saturated].mean(-1)
        assert grey.std() > 15, shot.name  # EM texture around the crop, not an empty background
