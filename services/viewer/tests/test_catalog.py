"""Catalogue: manifests -> volumes (with inputs followed), the -d/-c/-C/-k selection, bad input."""

import json
import shutil

import pytest
from csc_common.errors import InputError, ManifestError
from csc_common.views import ScoresView
from csc_common.volumes import Level, create_array, open_array, open_group
from csc_viewer.catalog import Selection, build_catalog, find_manifests, load_manifests


def _catalog(*paths):
    return build_catalog(load_manifests(paths))


def test_all_kinds_found_from_the_data_folder(demo):
    cat = build_catalog(load_manifests(find_manifests([], demo.root)))
    kinds = sorted({(v.kind, v.crop, v.name) for v in cat.volumes}, key=str)
    assert ("em", None, "fibsem") in kinds
    for kind in ("gt", "predictions", "processed", "submission"):
        assert (kind, 2, "mito") in kinds and (kind, 2, "ecs") in kinds
    assert ("gt", 1, "mito") in kinds and ("gt", 1, "ecs") in kinds
    assert cat.test_crops == {2}
    assert isinstance(cat.scores, ScoresView) and cat.scores.class_kinds() == {"mito": "instance", "ecs": "semantic"}


def test_inputs_are_followed_back_to_the_dataset(demo):
    cat = _catalog(demo.submission)  # submission -> processed -> predictions -> dataset
    assert {v.kind for v in cat.volumes} == {"em", "gt", "predictions", "processed", "submission"}


def test_geometry_comes_from_each_volume(demo, g):
    cat = _catalog(demo.dataset, demo.predictions)
    em = next(v for v in cat.volumes if v.kind == "em")
    assert [lv.geometry for lv in em.levels] == [g.EM_S0, g.EM_S1]
    assert em.levels[0].path == "recon-1/em/fibsem-uint8/s0"
    mito1 = next(v for v in cat.volumes if v.kind == "gt" and v.crop == 1 and v.name == "mito")
    assert mito1.geometry == g.TRAIN_MITO and mito1.class_kind == "instance"
    truth2 = next(v for v in cat.volumes if v.kind == "gt" and v.crop == 2 and v.name == "ecs")
    assert truth2.geometry == g.TEST_GEOM and truth2.store.name == "ground_truth.zarr"
    pred = next(v for v in cat.volumes if v.kind == "predictions" and v.name == "mito")
    assert pred.scale == pytest.approx(1 / 255) and pred.dataset == g.DATASET
    assert pred.levels == (Level("crop2/mito/s0", g.TEST_GEOM),)


def test_a_class_path_naming_the_ome_ngff_group_or_a_plain_array(demo, g, tmp_path):
    """The manifests name ``crop<N>/<class>/s0``; a path naming the group, or an older plain array, also loads."""
    root = tmp_path / "d"
    shutil.copytree(demo.root, root)
    data = json.loads((root / "processed.json").read_text())
    data["crops"][0]["classes"][0]["path"] = "crop2/mito"  # the OME-NGFF group
    (root / "processed.json").write_text(json.dumps(data))
    proc = root / "processed.zarr"
    ecs = open_array(proc / "crop2/ecs/s0")
    values, attrs = ecs[...], dict(ecs.attrs)
    shutil.rmtree(proc / "crop2/ecs")  # ecs as a plain array in the older layout
    create_array(open_group(proc / "crop2", "a"), "ecs", shape=values.shape, dtype=values.dtype, attrs=attrs)[...] = (
        values
    )
    data["crops"][0]["classes"][1]["path"] = "crop2/ecs"
    (root / "processed.json").write_text(json.dumps(data))
    cat = _catalog(root / "processed.json")
    levels = {v.name: v.levels for v in cat.volumes if v.kind == "processed"}
    assert levels == {"mito": (Level("crop2/mito/s0", g.TEST_GEOM),), "ecs": (Level("crop2/ecs", g.TEST_GEOM),)}


def test_selection_filters_like_the_original(demo):
    cat = _catalog(demo.submission)
    sel = Selection.parse(crops="crop2", classes="mi*", kinds="gt,predictions")  # the original's -k form
    names = {(v.kind, v.crop, v.name) for v in sel.apply(cat)}
    assert names == {("em", None, "fibsem"), ("gt", 2, "mito"), ("predictions", 2, "mito")}  # EM always shown
    sel = Selection.parse(crops="crop2", classes="mi*", kinds="gt", em=False)
    assert {(v.kind, v.crop, v.name) for v in sel.apply(cat)} == {("gt", 2, "mito")}
    sel = Selection.parse(crops="test", kinds="em")
    assert [v.kind for v in sel.apply(cat)] == ["em"]  # -c test forces the EM of the test crops
    sel = Selection.parse(crops="1", kinds="*")
    assert {v.crop for v in sel.apply(cat) if v.crop} == {1}
    assert Selection.parse(datasets="other*").apply(cat) == []


def test_unknown_kind_is_bad_input():
    with pytest.raises(InputError, match="unknown kind"):
        Selection.parse(kinds="gt,raw")


def test_missing_volume_is_bad_input(demo, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(demo.root, root)
    shutil.rmtree(root / "predictions.zarr" / "crop2" / "mito")
    with pytest.raises(InputError, match="crop2/mito/s0: zarr array not found"):
        _catalog(root / "predictions.json")


def test_wrong_kind_and_missing_manifest(demo, tmp_path):
    bad = tmp_path / "model.json"
    data = json.loads(demo.dataset.read_text())
    data["kind"] = "model"
    bad.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="/kind"):
        load_manifests([bad])
    with pytest.raises(ManifestError, match="not found"):
        load_manifests([tmp_path / "nope.json"])
    with pytest.raises(InputError, match="no manifests given"):
        find_manifests([], tmp_path)


def test_a_broken_input_manifest_is_skipped_not_fatal(demo, tmp_path, caplog):
    root = tmp_path / "d"
    shutil.copytree(demo.root, root)
    (root / "predictions.json").write_text("{broken")
    cat = _catalog(root / "processed.json")
    assert {v.kind for v in cat.volumes} == {"processed"}  # the chain to the dataset is cut here
    assert "input manifest skipped" in caplog.text


def test_a_folder_stands_for_its_manifests(demo):
    assert [p.name for p in find_manifests([demo.root], "unused")][:2] == ["dataset.json", "predictions.json"]


def test_class_kinds_come_from_the_manifests_not_the_names(demo, tmp_path):
    """A dataset fetched with mito overridden to semantic shows mito as a mask everywhere, the truth too."""
    root = tmp_path / "d"
    shutil.copytree(demo.root, root)
    data = json.loads((root / "dataset.json").read_text())
    for crop in data["crops"]:
        for c in crop["classes"]:
            c["kind"] = "semantic" if c["name"] == "mito" else "instance"
    (root / "dataset.json").write_text(json.dumps(data))
    cat = _catalog(root / "dataset.json")
    kinds = {(v.kind, v.crop, v.name): v.class_kind for v in cat.volumes if v.kind == "gt"}
    assert kinds == {
        ("gt", 1, "mito"): "semantic",
        ("gt", 1, "ecs"): "instance",
        ("gt", 2, "mito"): "semantic",  # the held-apart truth: placed by attrs, kind from the manifest
        ("gt", 2, "ecs"): "instance",
    }


def test_a_class_no_manifest_records_has_no_kind(demo, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(demo.root, root)
    arr = open_array(root / "ground_truth.zarr" / "crop2" / "ecs")
    extra = create_array(open_group(root / "ground_truth.zarr", "a")["crop2"], "nuc", shape=arr.shape, dtype="u1")
    extra.attrs.update(dict(arr.attrs))
    cat = _catalog(root / "dataset.json")
    nuc = next(v for v in cat.volumes if v.name == "nuc")
    assert nuc.kind == "gt" and nuc.class_kind is None  # shown as a mask, legend '?'; never guessed from the name
