"""Browser-free pictures: overlay composition, per-crop montage content (pixel checks), scores chart."""

from pathlib import Path

import numpy as np
import pytest
from csc_common.errors import InputError
from csc_viewer.catalog import Selection, build_catalog, find_manifests, load_manifests
from csc_viewer.layers import class_color, hex_to_rgb
from csc_viewer.montage import (
    MASK_ALPHA,
    ClassSlice,
    _read_plane,
    compose,
    crop_montage,
    montage_paths,
    reference_grid,
    scores_chart,
    slice_grid,
)
from PIL import Image


@pytest.fixture(scope="module")
def volumes(demo):
    return Selection.parse(kinds="*").apply(build_catalog(load_manifests(find_manifests([], demo.root))))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _saturated(rgb: np.ndarray) -> np.ndarray:
    return (rgb.max(axis=-1) - rgb.min(axis=-1)) > 60


def test_compose_paints_classes_over_grey_em():
    em = np.tile(np.linspace(0, 255, 8), (8, 1))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 1
    rgb = compose(em, [ClassSlice("ecs", mask, "mask")], (8, 8))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    outside = rgb[~mask.astype(bool)]
    assert np.all(outside[:, 0] == outside[:, 1]) and np.all(outside[:, 1] == outside[:, 2])  # grey
    grey = rgb[0, 2, 0] / 255.0
    want = np.round((grey * (1 - MASK_ALPHA) + np.array(hex_to_rgb(class_color("ecs"))) / 255 * MASK_ALPHA) * 255)
    assert rgb[2, 2] == pytest.approx(want, abs=1)


def test_compose_probabilities_scale_alpha():
    prob = np.array([[0.0, 0.5, 1.0]], np.float32)
    rgb = compose(None, [ClassSlice("mito", prob, "probability")], (1, 3)).astype(int)
    red = hex_to_rgb(class_color("mito"))[0]
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert 0 < rgb[0, 1, 0] < rgb[0, 2, 0] <= red


def test_probabilities_show_the_most_probable_class():
    mito = np.array([[0.9, 0.2]], np.float32)
    ecs = np.array([[0.3, 0.7]], np.float32)
    rgb = compose(None, [ClassSlice("mito", mito, "probability"), ClassSlice("ecs", ecs, "probability")], (1, 2))
    want_mito = np.round(np.array(hex_to_rgb(class_color("mito"))) * 0.9 * 0.85)
    want_ecs = np.round(np.array(hex_to_rgb(class_color("ecs"))) * 0.7 * 0.85)
    assert rgb[0, 0] == pytest.approx(want_mito, abs=1) and rgb[0, 1] == pytest.approx(want_ecs, abs=1)


def test_instances_get_different_shades():
    ids = np.array([[1, 2, 0]], np.uint32)
    rgb = compose(None, [ClassSlice("mito", ids, "labels")], (1, 3))
    assert rgb[0, 0].tolist() != rgb[0, 1].tolist()
    assert rgb[0, 2].tolist() == [0, 0, 0]


def test_slices_line_up_across_grids(volumes, g):
    """Truth at 6x4x4 nm and EM at 3x2x2 nm land on one grid: the dark EM is where the mito is."""
    crop1 = [v for v in volumes if v.crop == 1]
    em = next(v for v in volumes if v.kind == "em")
    ref = reference_grid(crop1)
    assert ref.voxel_size == (3.0, 2.0, 2.0) and ref.translation == g.TRAIN_MITO.translation
    target = slice_grid(ref, 0)
    em_plane = _read_plane(em, target, 0).astype(float)
    mito = _read_plane(next(v for v in crop1 if v.name == "mito"), target, 0)
    inside, outside = em_plane[mito == 7], em_plane[(mito == 0)]
    assert inside.size > 50
    assert inside.mean() < 110 < outside.mean()


def test_crop_montage_shows_em_and_classes(volumes, tmp_path):
    crop2 = [v for v in volumes if v.crop == 2 and v.kind != "submission"]
    em = next(v for v in volumes if v.kind == "em")
    out = crop_montage(crop2, em, tmp_path / "m.png")
    rgb = _png(out)
    h, w, _ = rgb.shape
    body = rgb[int(0.08 * h) : int(0.88 * h)]  # below the title, above the legend
    cols = np.array_split(body, 4, axis=1)  # EM, truth, predictions, processed
    em_col = cols[0]
    assert _saturated(em_col).mean() < 0.001  # EM alone is grey
    grey = em_col[~_saturated(em_col)]
    assert grey.std() > 20  # ...and shows structure, not a flat fill
    mito = np.array(hex_to_rgb(class_color("mito")))
    ecs = np.array(hex_to_rgb(class_color("ecs")))
    for col in cols[1:]:
        assert _saturated(col).mean() > 0.05
        reds = (col[..., 0] > col[..., 1] + 60) & (col[..., 0] > col[..., 2] + 20)
        yellows = (col[..., 0] > 180) & (col[..., 1] > 160) & (col[..., 2] < 150)
        assert reds.sum() > 500 and yellows.sum() > 200, (mito, ecs)
    legend = rgb[int(0.88 * h) :]
    assert (np.abs(legend - mito).sum(axis=-1) < 10).sum() > 20  # legend swatch in the class colour
    assert (np.abs(legend - ecs).sum(axis=-1) < 10).sum() > 20


def test_montage_paths():
    assert montage_paths(Path("o/m.png"), [5]) == {5: Path("o/m.png")}
    assert montage_paths(Path("o/m.png"), [1, 2]) == {1: Path("o/m-crop1.png"), 2: Path("o/m-crop2.png")}
    assert montage_paths(Path("o/{crop}.png"), [3]) == {3: Path("o/3.png")}


def test_scores_chart(demo, tmp_path):
    from dataclasses import replace

    from csc_common import views

    scores = views.load(demo.scores, views.ScoresView)
    out = scores_chart(scores, tmp_path / "c.png")
    rgb = _png(out)
    blue = (np.abs(rgb - np.array([31, 119, 180])).sum(axis=-1) < 12).sum()  # instance bar
    orange = (np.abs(rgb - np.array([255, 127, 14])).sum(axis=-1) < 12).sum()  # semantic bar
    assert blue > 2000 and orange > 2000
    # the semantic bar (0.7) is taller than the instance bar (0.55)
    # (rows where the colour spans a bar's width; the legend swatches are narrow)
    rows_b = np.nonzero((np.abs(rgb - np.array([31, 119, 180])).sum(axis=-1) < 12).sum(axis=1) > 60)[0]
    rows_o = np.nonzero((np.abs(rgb - np.array([255, 127, 14])).sum(axis=-1) < 12).sum(axis=1) > 60)[0]
    assert rows_o.min() < rows_b.min()
    with pytest.raises(InputError, match="label_scores"):
        scores_chart(replace(scores, label_scores={}), tmp_path / "e.png")


def test_chart_colours_follow_how_the_scores_manifest_scored_each_class(demo):
    from dataclasses import replace

    from csc_common import views
    from csc_viewer.montage import score_rows

    scores = views.load(demo.scores, views.ScoresView)
    assert score_rows(scores) == [("mito", 0.55, True), ("ecs", 0.7, False)]
    # "ecs" scored as an instance class (e.g. evaluate --instance-classes ecs): an F1 record, an instance bar
    flipped = replace(
        scores, label_scores={"ecs": {"f1": 0.4, "normalized_hausdorff_distance": 0.9}, "mito": {"iou": 0.3}}
    )
    assert score_rows(flipped) == [("ecs", 0.4, True), ("mito", 0.3, False)]
