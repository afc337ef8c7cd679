"""Voxel counts per (crop, class): from the CellMap annotation metadata where the bucket has it, else the contents."""

import json
from pathlib import Path

import numpy as np
import pytest
from csc_common import views, volumes
from csc_common.views import DatasetView, VoxelCounts
from csc_fetcher import voxelcounts
from csc_fetcher.cli import main


def _level(root: Path, data: np.ndarray, attrs: dict | None = None, chunks=(4, 4, 4)) -> Path:
    grp = volumes.open_group(root, "w")
    volumes.create_array(grp, "s0", shape=data.shape, dtype=data.dtype, chunks=chunks, attrs=attrs)[...] = data
    return root / "s0"


def test_metadata_complement_counts_are_used_without_reading_the_chunks(tmp_path):
    data = np.zeros((6, 6, 6), np.uint8)  # contents say nothing is present ...
    ann = {"cellmap": {"annotation": {"complement_counts": {"absent": 200, "unknown": 6}}}}
    level = _level(tmp_path / "a", data, ann)  # ... the metadata says 216 - 200 - 6 = 10 are
    assert voxelcounts.count_level(level) == VoxelCounts(annotated=210, present=10)


def test_contents_counted_blockwise_with_the_encoding(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    data = rng.choice(np.array([0, 1, 255], np.uint8), size=(9, 10, 11), p=[0.6, 0.3, 0.1])
    enc = {"cellmap": {"annotation": {"annotation_type": {"encoding": {"absent": 0, "present": 1, "unknown": 255}}}}}
    monkeypatch.setattr(voxelcounts, "BLOCK", (4, 4, 4))  # several blocks, partial ones at the faces
    got = voxelcounts.count_level(_level(tmp_path / "b", data, enc, chunks=(3, 4, 5)))
    assert got == VoxelCounts(annotated=int((data != 255).sum()), present=int((data == 1).sum()))
    ids = np.zeros((5, 5, 5), np.uint64)
    ids[1:3, 1:3, 1:3] = 7
    ids[4, 4, 4] = 2**40  # instance ids of any size: everything but 0 is the class
    assert voxelcounts.count_level(_level(tmp_path / "c", ids)) == VoxelCounts(annotated=125, present=9)


@pytest.mark.parametrize("bad", [{"absent": 300}, {"absent": "many"}, {"absent": -1}])
def test_metadata_that_does_not_fit_the_array_is_ignored(tmp_path, bad):
    data = np.zeros((6, 6, 6), np.uint8)
    data[0] = 1
    level = _level(tmp_path / "d", data, {"cellmap": {"annotation": {"complement_counts": bad}}})
    assert voxelcounts.count_level(level) == VoxelCounts(annotated=216, present=36)


def test_fetch_records_counts_of_every_training_class(fetched_tiny: Path):
    ds = views.load(fetched_tiny / "dataset.json", DatasetView)
    train = ds.crops_of("train")
    assert train and all(c.counts is None for crop in ds.crops_of("test") for c in crop.classes)
    for crop in train:
        zarr_root = ds.dataset(crop.dataset).zarr
        for c in crop.classes:
            arr = np.asarray(volumes.open_array(zarr_root / str(c.path) / "s0")[...])
            assert c.counts == VoxelCounts(annotated=arr.size, present=int(np.count_nonzero(arr))), (crop.id, c.name)
    assert sum(c.counts.present for crop in train for c in crop.classes if c.counts) > 0
    raw = json.loads((fetched_tiny / "dataset.json").read_text())
    assert raw["crops"][0]["classes"][0]["counts"].keys() == {"annotated", "present"}
    assert ds.to_json(ds.path) == raw  # typed field round-trips exactly


def test_rerun_over_a_complete_fetch_keeps_the_counts(tmp_path: Path, tiny_bucket: Path):
    argv = ["--source", "synthetic", "--size", "tiny", "--bucket-dir", str(tiny_bucket), "--dest", str(tmp_path)]
    argv += ["--datasets", "syn_iso-1", "-q"]
    assert main(argv) == 0
    first = json.loads((tmp_path / "dataset.json").read_text())["crops"]
    assert main(argv) == 0  # every object skipped this time; the counts come from the files on disk
    assert json.loads((tmp_path / "dataset.json").read_text())["crops"] == first
