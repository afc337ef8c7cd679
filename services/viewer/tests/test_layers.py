"""Layer specs from manifests: names, layer types, voxel sizes, offsets, shaders, the crop the view opens on."""

from pathlib import Path

import numpy as np
import pytest
from csc_common.geometry import Geometry
from csc_common.volumes import Level
from csc_viewer.catalog import Selection, Volume, build_catalog, find_manifests, load_manifests
from csc_viewer.layers import build_views, class_color, layer_for, mask_shader, probability_shader


@pytest.fixture(scope="module")
def catalog(demo):
    return build_catalog(load_manifests(find_manifests([], demo.root)))


def _view(catalog, **sel):
    views = build_views(Selection.parse(**sel).apply(catalog), viewport=(1000, 800), layout="xy")
    assert len(views) == 1
    return views[0]


def test_names_and_types_follow_the_original(catalog):
    view = _view(catalog, kinds="*")
    names = [spec.name for spec in view.layers]
    assert names[0] == "fibsem"
    assert names[1:] == [
        "crop1/gt/ecs",
        "crop1/gt/mito",
        "crop2/gt/ecs",
        "crop2/gt/mito",
        "crop2/predictions/ecs",
        "crop2/predictions/mito",
        "crop2/processed/ecs",
        "crop2/processed/mito",
        "crop2/submission/ecs",
        "crop2/submission/mito",
    ]
    kinds = {spec.name: (spec.layer_type, spec.role) for spec in view.layers}
    assert kinds["fibsem"] == ("image", "em")
    assert kinds["crop1/gt/mito"] == ("segmentation", "labels")  # instance class
    assert kinds["crop1/gt/ecs"] == ("image", "mask")  # semantic class: coloured mask
    assert kinds["crop2/processed/mito"] == ("segmentation", "labels")
    assert kinds["crop2/predictions/mito"] == ("image", "probability")
    assert kinds["crop2/predictions/ecs"] == ("image", "probability")


def test_voxel_sizes_and_offsets_are_each_volumes_own(catalog, g):
    view = _view(catalog, kinds="*")
    mito = view.layer("crop1/gt/mito")
    assert mito.voxel_size == g.TRAIN_MITO.voxel_size == (6.0, 4.0, 4.0)
    assert mito.translation == g.TRAIN_MITO.translation
    # fractional voxel offsets survive: 19.5/6, 51/4, 47/4
    assert mito.voxel_offset == pytest.approx((3.25, 12.75, 11.75))
    em = view.layer("fibsem")
    assert em.voxel_size == (3.0, 2.0, 2.0)  # anisotropic EM, level closest to the finest crop voxel size
    assert em.voxel_offset == pytest.approx((0.5, 5.5, 3.5))
    pred = view.layer("crop2/predictions/mito")
    assert pred.level.geometry == g.TEST_GEOM
    # world placement: the same world point maps to consistent indices in both grids
    world = np.array(g.MITO_CENTRE)
    for spec in (mito, em, pred):
        idx = (world - np.array(spec.translation)) / np.array(spec.voxel_size)
        back = np.array(spec.translation) + idx * np.array(spec.voxel_size)
        assert back == pytest.approx(world)


def test_em_level_follows_the_crops_resolution(g):
    em = Volume("ds", "em", None, "fibsem", None, Path("."), (Level("s0", g.EM_S0), Level("s1", g.EM_S1)))
    coarse = Volume(
        "ds",
        "gt",
        5,
        "nuc",
        "instance",
        Path("."),
        (Level("s0", Geometry((6.0, 4.0, 4.0), (0.0, 0.0, 0.0), (4, 4, 4))),),
    )
    view = build_views([em, coarse])[0]
    assert view.layer("fibsem").level.path == "s1"
    assert view.scales == (6.0, 4.0, 4.0)


def test_view_opens_on_the_crop(catalog, g):
    view = _view(catalog, crops="2", kinds="em,gt,predictions")
    assert view.focus_crop == 2
    box = g.TEST_GEOM.box
    assert view.box == box
    centre = [(a + b) / 2 for a, b in zip(box.start, box.stop, strict=True)]
    assert np.array(view.position) * np.array(view.scales) == pytest.approx(centre)
    # zoom: the crop's 80 nm x extent fits 1000 px with a 10% margin; canonical voxel = 2 nm
    assert view.cross_section_scale == pytest.approx(max(80 / 1000, 80 / 800) * 1.1 / 2.0)
    visible = {s.name for s in view.layers if s.visible}
    assert visible == {"fibsem", "crop2/gt/ecs", "crop2/gt/mito"}  # truth first; others start hidden


def test_focus_option_and_default(catalog):
    assert _view(catalog).focus_crop == 1  # smallest id
    views = build_views(Selection.parse().apply(catalog), focus_crop=2)
    assert views[0].focus_crop == 2


def test_shaders_carry_the_class_colour(catalog):
    view = _view(catalog, kinds="*")
    ecs = view.layer("crop2/gt/ecs")
    assert ecs.shader == mask_shader(class_color("ecs"))
    assert class_color("ecs") in ecs.shader and "emitRGBA" in ecs.shader
    pred = view.layer("crop2/predictions/mito")
    assert pred.shader == probability_shader(class_color("mito"))
    assert "getDataValue()" in pred.shader and "threshold" in pred.shader
    assert view.layer("crop2/gt/mito").shader is None


def test_layer_for_every_role(g):
    lv = (Level("a", g.TEST_GEOM),)
    assert layer_for(Volume("d", "processed", 3, "er", "semantic", Path("."), lv), visible=False).role == "mask"
    assert layer_for(Volume("d", "submission", 3, "nuc", "instance", Path("."), lv), visible=True).role == "labels"
    assert (
        layer_for(Volume("d", "predictions", 3, "nuc", "instance", Path("."), lv), visible=True).role == "probability"
    )


def test_colours_are_stable_and_distinct():
    demo_classes = ["mito", "nuc", "ves", "ecs", "cyto", "er"]
    colours = [class_color(c) for c in demo_classes]
    assert len(set(colours)) == len(colours)
    assert class_color("mito") == class_color("mito")
    assert class_color("not_a_class").startswith("#")
