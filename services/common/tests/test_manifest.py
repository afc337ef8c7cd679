import copy
import json

import pytest
from csc_common.errors import ManifestError
from csc_common.manifest import KINDS, new_manifest, now, read_manifest, validate, write_manifest

SHA = "ab" * 32
GEOM = {"voxel_size": [8.0, 8.0, 8.0], "translation": [4.0, 0.0, 12.5], "shape": [10, 10, 10]}
SPEC = {
    "channels": 1,
    "patch_shape": [32, 32, 32],
    "voxel_size": [8, 8, 8],
    "normalization": {"scale": 1 / 255, "offset": 0},
}
CROPS = [
    {
        "id": 1,
        "dataset": "ds",
        "classes": [{"name": "mito", "kind": "instance", "path": "crop1/mito", "geometry": GEOM}],
    }
]

BODIES = {
    "dataset": {
        "source": "synthetic",
        "test_manifest": "test_crop_manifest.csv",
        "datasets": [
            {
                "name": "ds",
                "zarr": "ds/ds.zarr",
                "em": {"path": "recon-1/em/fibsem-uint8", "levels": [{"path": "s0", **GEOM}]},
            }
        ],
        "crops": [
            {"id": 1, "dataset": "ds", "split": "train", "classes": [{"name": "mito", "geometry": GEOM, "path": "x"}]}
        ],
    },
    "model": {
        "name": "demo",
        "architecture": {"name": "unet", "dims": 3},
        "input": SPEC,
        "classes": ["mito"],
        "checkpoint": {"path": "ckpt.pt", "sha256": SHA, "bytes": 10},
    },
    "onnx-model": {
        "onnx": {"path": "model.onnx", "sha256": SHA, "bytes": 10},
        "opset": 18,
        "input": SPEC,
        "classes": ["mito"],
        "valid_shape": {"multiple": [4, 4, 4], "min": [8, 8, 8]},
        "verification": {"max_abs_diff": 1e-6, "tolerance": 1e-4},
    },
    "predictions": {"zarr": "predictions.zarr", "encoding": {"dtype": "uint8", "scale": 1 / 255}, "crops": CROPS},
    "processed": {"zarr": "processed.zarr", "crops": CROPS},
    "submission": {
        "zip": {"path": "submission.zip", "sha256": SHA, "bytes": 10},
        "rows": 2,
        "packed": 1,
        "missing": [{"crop": 1, "class": "er"}],
    },
    "scores": {
        "result": "result.json",
        "overall_score": 0.5,
        "overall_instance_score": 0.5,
        "overall_semantic_score": None,
        "label_scores": {"mito": {"f1_score": 1.0}},
    },
}

# One broken variant per kind: (mutation, the JSON pointer the error must name)
BREAKS = {
    "dataset": (
        lambda d: d["datasets"][0]["em"]["levels"][0].update(voxel_size=[8, 0, 8]),
        "/datasets/0/em/levels/0/voxel_size/1",
    ),
    "model": (lambda d: d["checkpoint"].pop("sha256"), "/checkpoint"),
    "onnx-model": (lambda d: d.update(opset=11), "/opset"),
    "predictions": (lambda d: d["encoding"].update(dtype="int64"), "/encoding/dtype"),
    "processed": (lambda d: d["crops"][0]["classes"][0]["geometry"].pop("shape"), "/crops/0/classes/0/geometry"),
    "submission": (lambda d: d["missing"][0].pop("class"), "/missing/0"),
    "scores": (lambda d: d.update(overall_score="high"), "/overall_score"),
}


def make(kind: str) -> dict:
    return new_manifest(kind, "fetcher", now(), args=[], **copy.deepcopy(BODIES[kind]))


def test_every_kind_has_an_example():
    assert set(BODIES) == set(KINDS) == set(BREAKS)


@pytest.mark.parametrize("kind", KINDS)
def test_valid_example_passes(kind):
    validate(make(kind), kind)


@pytest.mark.parametrize("kind", KINDS)
def test_broken_example_names_the_field(kind):
    data = make(kind)
    mutate, pointer = BREAKS[kind]
    mutate(data)
    with pytest.raises(ManifestError) as err:
        validate(data, kind, "m.json")
    assert str(err.value).startswith(f"m.json: {pointer}:")


def test_header_is_required():
    data = make("scores")
    del data["producer"]["stage"]
    with pytest.raises(ManifestError, match="m.json: /producer: 'stage' is a required property"):
        validate(data, "scores", "m.json")


def test_write_then_read(tmp_path):
    path = tmp_path / "sub" / "model.json"
    write_manifest(path, make("model"))
    m = read_manifest(path, "model")
    assert m.kind == "model"
    assert m.resolve(m["checkpoint"]["path"]) == (tmp_path / "sub" / "ckpt.pt").resolve()
    assert [p.name for p in path.parent.iterdir()] == ["model.json"]  # no temp files left


def test_write_refuses_invalid_and_leaves_nothing(tmp_path):
    data = make("model")
    data["classes"] = []
    with pytest.raises(ManifestError, match="/classes"):
        write_manifest(tmp_path / "model.json", data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "manifest file not found"),
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "/: manifest must be a JSON object"),
        ('{"kind": "model", "schema_version": 1}', "/kind: is 'model', expected 'dataset'"),
        ('{"kind": "dataset", "schema_version": 7}', "/schema_version: is 7, expected 1"),
        ('{"kind": "dataset", "schema_version": 1}', "/: 'producer' is a required property"),
    ],
)
def test_read_errors_name_file_and_problem(tmp_path, content, expected):
    path = tmp_path / "dataset.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ManifestError) as err:
        read_manifest(path, "dataset")
    msg = str(err.value)
    assert msg.startswith(str(path)) and expected in msg and "\n" not in msg


def test_input_ref_is_relative(tmp_path):
    src = write_manifest(tmp_path / "a" / "model.json", make("model"))
    ref = src.ref(tmp_path / "b" / "out.json")
    assert ref["path"] == "../a/model.json" and len(ref["sha256"]) == 64
    assert json.loads((tmp_path / "a" / "model.json").read_text())["kind"] == "model"


def test_written_files_are_readable_by_others(tmp_path):
    import os
    import stat

    from csc_common.fsutil import atomic_dir

    old = os.umask(0o022)
    try:
        path = write_manifest(tmp_path / "model.json", make("model")).path
        with atomic_dir(tmp_path / "out.zarr") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out.zarr").stat().st_mode) == 0o755
