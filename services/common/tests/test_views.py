"""Typed manifest views: built, saved, loaded, and refused with one line naming the file."""

import json

import pytest
from csc_common.errors import InputError, ManifestError
from csc_common.geometry import Geometry
from csc_common.views import (
    Artifact,
    ClassEntry,
    CropEntry,
    DatasetEntry,
    DatasetView,
    EmLevel,
    Encoding,
    Header,
    PredictionsView,
    ProcessedView,
    load,
    load_any,
    save,
)

G = Geometry((8, 8, 8), (0, 16, 32), (4, 5, 6))


def _dataset(tmp_path):
    zarr = tmp_path / "ds" / "ds.zarr"
    crops = (
        CropEntry(1, "ds", (ClassEntry("mito", "instance", G, "recon-1/labels/groundtruth/crop1/mito"),), "train"),
        CropEntry(2, "ds", (ClassEntry("ecs", "semantic", G),), "test"),
    )
    return DatasetView(
        header=Header.new("fetcher", "2026-01-01T00:00:00+00:00", args=[]),
        source="synthetic",
        datasets=(DatasetEntry("ds", zarr, "recon-1/em/fibsem-uint8", (EmLevel("s0", G, True),)),),
        crops=crops,
        test_manifest=tmp_path / "test_crop_manifest.csv",
        details={"counts": {"objects": 3}},
    )


def test_save_then_load_gives_the_same_view_with_resolved_paths(tmp_path):
    out = save(_dataset(tmp_path), tmp_path / "sub" / "dataset.json")
    raw = json.loads(out.path.read_text())
    assert raw["datasets"][0]["zarr"] == "../ds/ds.zarr" and raw["test_manifest"] == "../test_crop_manifest.csv"
    back = load(out.path, DatasetView)
    assert back.datasets[0].zarr == (tmp_path / "ds" / "ds.zarr").resolve()
    assert back.datasets[0].level_array("s0") == back.datasets[0].zarr / "recon-1/em/fibsem-uint8/s0"
    assert back.crops == out.crops and back.details == {"counts": {"objects": 3}}
    assert back.class_kinds() == {"mito": "instance", "ecs": "semantic"}
    assert [c.id for c in back.crops_of("test")] == [2] and back.crops[0].box == G.box


def test_errors_name_the_file(tmp_path):
    ds = save(_dataset(tmp_path), tmp_path / "dataset.json")
    with pytest.raises(ManifestError, match=r"dataset.json: /kind: is 'dataset', expected 'predictions'"):
        load(ds.path, PredictionsView)
    with pytest.raises(InputError, match=r"dataset.json: dataset 'nope' is not in /datasets \(ds\)"):
        ds.dataset("nope")
    bad = json.loads(ds.path.read_text())
    bad["crops"][0]["classes"][0]["geometry"]["voxel_size"] = [0, 1, 1]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match=r"bad.json: /crops/0/classes/0/geometry/voxel_size/0"):
        load(tmp_path / "bad.json", DatasetView)
    with pytest.raises(ManifestError, match="collide"):
        save(ProcessedView(header=ds.header, zarr=tmp_path, crops=(), details={"zarr": "x"}), tmp_path / "p.json")


def test_load_any_picks_the_view_by_kind(tmp_path):
    ds = save(_dataset(tmp_path), tmp_path / "dataset.json")
    assert isinstance(load_any(ds.path), DatasetView)
    with pytest.raises(ManifestError, match="expected 'predictions' or 'processed'"):
        load_any(ds.path, [PredictionsView, ProcessedView])


def test_regions_travel_as_volumes_and_artifacts_verify(tmp_path):
    region = CropEntry(None, "ds", (ClassEntry("mito", "instance", G, "ds/mito/s0"),))
    view = PredictionsView(
        header=Header.new("predictor", "2026-01-01T00:00:00+00:00", args=[]),
        zarr=tmp_path / "predictions.zarr",
        encoding=Encoding("uint8", 1 / 255),
        crops=(region,),
    )
    raw = view.to_json(tmp_path / "predictions.json")
    assert raw["crops"] == [] and raw["volumes"][0]["dataset"] == "ds"
    assert save(view, tmp_path / "predictions.json").crops[0].name == "ds"
    f = tmp_path / "weights.bin"
    f.write_bytes(b"abc")
    art = Artifact.of(f)
    assert art.verify("model.json") == f.resolve() and art.bytes == 3
    f.write_bytes(b"abd")
    with pytest.raises(InputError, match="sha256 does not match the one recorded in model.json"):
        art.verify("model.json")
