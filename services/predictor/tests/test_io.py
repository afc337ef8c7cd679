from pathlib import Path

import numpy as np
import pytest
from csc_common.errors import InputError
from csc_common.geometry import Geometry
from csc_common.volumes import Level, create_array, open_array, open_group, read_levels
from csc_predictor.io import BlockMarkers, EmSource, em_presence, encode, ensure_array, inside_slices, read_em


def _em(tmp_path: Path, data: np.ndarray, geom: Geometry, chunks=(4, 4, 4)) -> EmSource:
    grp = open_group(tmp_path / "em.zarr", mode="w")
    arr = create_array(grp, "s0", shape=data.shape, dtype=data.dtype, chunks=chunks)
    arr[...] = data
    return EmSource("ds", tmp_path / "em.zarr" / "s0", "s0", geom)


def test_read_em_same_grid_is_exact_and_edge_padded_outside(tmp_path: Path) -> None:
    data = np.arange(8 * 8 * 8, dtype=np.uint8).reshape(8, 8, 8)
    src = _em(tmp_path, data, Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (8, 8, 8)))
    inner = read_em(src, Geometry((8.0, 8.0, 8.0), (16.0, 8.0, 0.0), (4, 4, 4)))
    np.testing.assert_array_equal(inner, data[2:6, 1:5, 0:4])
    outer = read_em(src, Geometry((8.0, 8.0, 8.0), (-16.0, 0.0, 0.0), (4, 8, 8)))
    np.testing.assert_array_equal(outer[0], data[0])  # replicated edge, not zeros
    np.testing.assert_array_equal(outer[2:], data[:2])
    assert read_em(src, Geometry((8.0, 8.0, 8.0), (1000.0, 0.0, 0.0), (2, 2, 2))) is None


def test_read_em_resamples_a_shifted_grid_linearly(tmp_path: Path) -> None:
    z = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((8, 8, 8), np.float32) * 10
    src = _em(tmp_path, z.astype(np.uint8), Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (8, 8, 8)))
    out = read_em(src, Geometry((4.0, 4.0, 4.0), (2.0, 0.0, 0.0), (6, 2, 2)))
    np.testing.assert_allclose(out[:, 0, 0], [5, 15, 25, 35, 45, 55], atol=1e-4)


def test_missing_chunks_read_as_fill_and_are_counted(tmp_path: Path) -> None:
    data = np.full((8, 8, 8), 200, np.uint8)
    src = _em(tmp_path, data, Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (8, 8, 8)))
    whole = Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (8, 8, 8))
    assert em_presence(src, whole) == (8, 8)
    (src.array_path / "0" / "0" / "0").unlink()
    assert em_presence(src, whole) == (7, 8)
    assert em_presence(src, Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (4, 4, 4))) == (0, 1)
    got = read_em(src, whole)
    assert got[0, 0, 0] == 0 and got[7, 7, 7] == 200


def test_truncated_chunk_is_a_clear_input_error(tmp_path: Path) -> None:
    src = _em(tmp_path, np.full((8, 8, 8), 7, np.uint8), Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (8, 8, 8)))
    chunk = src.array_path / "1" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes()[:5])
    with pytest.raises(InputError, match="cannot read EM region"):
        read_em(src, Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (8, 8, 8)))


def test_inside_slices() -> None:
    src = Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (8, 8, 8))
    assert inside_slices(src, Geometry((8.0, 8.0, 8.0), (-16.0, 0.0, 40.0), (4, 4, 4))) == (
        slice(2, 4),
        slice(0, 4),
        slice(0, 3),
    )


def test_encode() -> None:
    p = np.array([0.0, 0.5, 1.0, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(encode(p, "uint8"), [0, 128, 255, 255, 0])
    assert encode(p, "float16").dtype == np.float16


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32"])
def test_encode_is_the_plain_formula_and_leaves_its_input_alone(dtype: str) -> None:
    block = np.random.default_rng(3).uniform(-0.2, 1.2, size=(3, 9, 10, 11)).astype(np.float32)
    view = block[1, 1:8, 2:9, 3:10]  # the predictor encodes views into the blended region
    before = view.copy()
    got = encode(view, dtype)
    plain = np.rint(np.clip(before, 0.0, 1.0) * 255.0).astype(np.uint8) if dtype == "uint8" else None
    np.testing.assert_array_equal(got, plain if plain is not None else np.clip(before, 0.0, 1.0).astype(dtype))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(view, before)


def test_block_markers_are_keyed_by_plan(tmp_path: Path) -> None:
    m = BlockMarkers(tmp_path / "p.blocks", "a" * 64)
    assert m.plan_hash() is None and m.done_ids() == set()
    m.write_plan({"blocks": 1})
    m.mark_done("crop1-0_0_0", {"provider": "CPU"})
    assert m.plan_hash() == "a" * 64 and m.is_done("crop1-0_0_0") and m.done_ids() == {"crop1-0_0_0"}
    assert m.records(["crop1-0_0_0", "nope"]) == [{"provider": "CPU"}]
    other = BlockMarkers(tmp_path / "p.blocks", "b" * 64)
    assert other.done_ids() == set() and not other.is_done("crop1-0_0_0")
    other.write_plan({})
    other.mark_done("crop2-0_0_0", {})
    other.forget_other_plans()
    assert m.done_ids() == set() and other.done_ids() == {"crop2-0_0_0"}
    m.remove()
    assert not (tmp_path / "p.blocks").exists()


def test_ensure_array_writes_an_ome_ngff_group_and_reuses_a_matching_array(tmp_path: Path) -> None:
    g = Geometry((8.0, 8.0, 8.0), (150.0, 100.5, -93.0), (10, 12, 14))
    arr = ensure_array(tmp_path / "p.zarr", "crop7/mito/s0", g, chunks=(8, 8, 8), dtype="uint8")
    arr[0, 0, 0] = 9
    assert dict(arr.attrs) == {"voxel_size": [8.0, 8.0, 8.0], "translation": [150.0, 100.5, -93.0]}
    assert read_levels(tmp_path / "p.zarr/crop7/mito") == [Level("s0", g)]
    attrs = dict(open_group(tmp_path / "p.zarr/crop7/mito").attrs)
    assert attrs["multiscales"][0]["name"] == "mito" and attrs["multiscales"][0]["version"] == "0.4"
    again = ensure_array(tmp_path / "p.zarr", "crop7/mito/s0", g, chunks=(8, 8, 8), dtype="uint8")
    assert again[0, 0, 0] == 9  # another shard of the same plan keeps what was written
    moved = g.subgrid((slice(1, 11), slice(0, 12), slice(0, 14)))
    ensure_array(tmp_path / "p.zarr", "crop7/mito/s0", moved, chunks=(8, 8, 8), dtype="uint8")
    assert read_levels(tmp_path / "p.zarr/crop7/mito") == [Level("s0", moved)]
    assert open_array(tmp_path / "p.zarr/crop7/mito/s0").attrs["translation"] == list(moved.translation)
