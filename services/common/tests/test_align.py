"""The "match crop space" rule (UPSTREAM.md §8.3), hand-computable cases."""

import numpy as np
import pytest
from csc_common import volumes
from csc_common.errors import GeometryError, InputError
from csc_common.geometry import Geometry
from csc_common.submission.align import (
    SourceGrid,
    align_array,
    centre_pad_crop,
    check_size_ratio,
    choose_non_ome_level,
    read_aligned,
)


def G(vs, tr, shape):
    return Geometry(tuple(vs), tuple(tr), tuple(shape))


def test_same_grid_is_identity_and_keeps_values():
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    out = align_array(data, G([4, 4, 4], [8, 8, 8], data.shape), G([4, 4, 4], [8, 8, 8], data.shape), kind="semantic")
    # No rescale: values untouched (the scorer binarises > 0 later).
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize(
    ("src_t", "tgt_t", "expect"),
    [
        ((8.0, 0, 0), (0.0, 0, 0), 2),  # source starts 2 voxels into the target
        ((0.0, 0, 0), (8.0, 0, 0), -2),  # source starts 2 voxels before
        ((9.0, 0, 0), (0.0, 0, 0), 2),  # snapped down to 8 -> +2
        ((7.9, 0, 0), (0.0, 0, 0), 1),  # snapped down to 4 -> +1
        ((-1.0, 0, 0), (0.0, 0, 0), -1),  # snapped down to -4 -> -1
        ((0.0, 0, 0), (5.0, 0, 0), -1),  # d = -5: sign * floor(5/4) = -1
    ],
)
def test_offset_snapping(src_t, tgt_t, expect):
    data = np.zeros((6, 1, 1), np.uint16)
    data[:, 0, 0] = np.arange(1, 7)
    out = align_array(data, G([4, 4, 4], src_t, data.shape), G([4, 4, 4], tgt_t, (6, 1, 1)), kind="instance")
    want = np.zeros(6, np.uint16)
    if expect >= 0:
        want[expect:] = np.arange(1, 7)[: 6 - expect]
    else:
        want[: 6 + expect] = np.arange(1, 7)[-expect:]
    np.testing.assert_array_equal(out[:, 0, 0], want)
    assert out.dtype == np.uint16


def test_no_overlap_is_all_zero():
    data = np.ones((2, 2, 2), np.uint8)
    out = align_array(data, G([1, 1, 1], [100, 0, 0], data.shape), G([1, 1, 1], [0, 0, 0], (4, 4, 4)), kind="instance")
    assert out.shape == (4, 4, 4) and not out.any()


def test_instance_nearest_upsample_keeps_dtype_and_ids():
    data = np.array([[[1, 2], [3, 300]]], dtype=np.uint16)  # (1, 2, 2) at 8 nm
    out = align_array(data, G([8, 8, 8], [0, 0, 0], data.shape), G([4, 4, 4], [0, 0, 0], (2, 4, 4)), kind="instance")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 300, 300], [3, 3, 300, 300]])
    np.testing.assert_array_equal(out[1], out[0])


def test_semantic_linear_then_threshold():
    # Upsampling 0/1 along x by 2: linear interpolation gives 0.25/0.75 near the edge; > 0.5 keeps 0.75.
    data = np.zeros((1, 1, 4), np.uint8)
    data[..., 2:] = 1
    out = align_array(data, G([2, 2, 2], [0, 0, 0], data.shape), G([2, 2, 1], [0, 0, 0], (1, 1, 8)), kind="semantic")
    assert out.dtype == bool
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_semantic_bool_source_is_resampled_as_float():
    data = np.ones((4, 4, 4), bool)
    out = align_array(data, G([2, 2, 2], [0, 0, 0], data.shape), G([4, 4, 4], [0, 0, 0], (2, 2, 2)), kind="semantic")
    assert out.dtype == bool and out.all()


def test_no_voxel_size_centre_pad_crop():
    data = np.arange(5, dtype=np.uint8).reshape(5, 1, 1) + 1
    out = align_array(data, None, G([1, 1, 1], [50, 0, 0], (3, 1, 1)), kind="instance")
    np.testing.assert_array_equal(out[:, 0, 0], [2, 3, 4])
    out = align_array(data, SourceGrid(None, None), G([1, 1, 1], [0, 0, 0], (8, 1, 1)), kind="instance")
    np.testing.assert_array_equal(out[:, 0, 0], [0, 1, 2, 3, 4, 5, 0, 0])


def test_centre_pad_crop_odd_even():
    a = np.arange(4).reshape(4, 1, 1)
    np.testing.assert_array_equal(centre_pad_crop(a, (7, 1, 1))[:, 0, 0], [0, 0, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(centre_pad_crop(a, (1, 1, 1))[:, 0, 0], [1])


def test_translation_unknown_means_offset_zero():
    data = np.ones((2, 2, 2), np.uint8)
    out = align_array(data, SourceGrid((1, 1, 1), None), G([1, 1, 1], [500, 500, 500], (3, 3, 3)), kind="instance")
    assert out[:2, :2, :2].all() and out.sum() == 8


def test_size_ratio_guard(monkeypatch):
    assert check_size_ratio((32, 32, 32), (2, 2, 2)) == 4096
    with pytest.raises(GeometryError, match="MAX_VOLUME_SIZE_RATIO"):
        check_size_ratio((33, 32, 32), (2, 2, 2), where="crop1/mito")
    monkeypatch.setenv("MAX_VOLUME_SIZE_RATIO", "2")
    with pytest.raises(GeometryError, match=r"limit 2x"):
        check_size_ratio((3, 1, 1), (1, 1, 1))
    with pytest.raises(GeometryError, match="no voxels"):
        check_size_ratio((3, 1, 1), (0, 1, 1))


def test_non_ome_level_choice():
    cands = [("s0", (2, 2, 2)), ("s1", (4, 4, 4)), ("s2", (8, 8, 8)), ("raw", None)]
    assert choose_non_ome_level(cands, (4, 4, 4)) == "s1"
    assert choose_non_ome_level(cands, (5, 5, 5)) == "s1"  # closest of the not-coarser levels
    assert choose_non_ome_level(cands, (7, 7, 7)) == "s1"  # s2 closer (1.7 vs 5.2) but coarser
    assert choose_non_ome_level(cands, (1, 1, 1)) == "s0"  # all coarser: the closest
    assert choose_non_ome_level([("a", None), ("b", None)], (1, 1, 1)) == "a"


def test_source_grid_aliases():
    g = SourceGrid.from_attrs({"resolution": [1, 2, 3], "offset": [4, 5, 6]})
    assert g.voxel_size == (1.0, 2.0, 3.0) and g.translation == (4.0, 5.0, 6.0)
    g = SourceGrid.from_attrs({"scale": [1, 1, 2, 3]})  # leading channel axis ignored
    assert g.voxel_size == (1.0, 2.0, 3.0) and g.translation is None
    with pytest.raises(InputError, match="bad voxel_size"):
        SourceGrid.from_attrs({"voxel_size": [1, 0, 1]}, "x")


def test_read_aligned_array_ome_and_plain_group(tmp_path):
    root = volumes.open_group(tmp_path / "s.zarr", "w")
    target = G([4, 4, 4], [0, 0, 0], (4, 4, 4))
    data = np.zeros((4, 4, 4), np.uint8)
    data[1:3, 1:3, 1:3] = 1
    # single array with aliases
    volumes.create_array(
        root, "arr", shape=data.shape, dtype="u1", attrs={"resolution": [4, 4, 4], "offset": [4, 0, 0]}
    )
    root["arr"][...] = data
    out = read_aligned(tmp_path / "s.zarr/arr", target, kind="semantic")
    np.testing.assert_array_equal(out[2:4], data[1:3])
    # OME-NGFF group: s0 at 2 nm, s1 at 4 nm -> s1 chosen
    fine = np.repeat(np.repeat(np.repeat(data, 2, 0), 2, 1), 2, 2)
    volumes.write_multiscale(root, "ome", [(fine, G([2, 2, 2], [0, 0, 0], fine.shape)), (data, target)])
    out = read_aligned(tmp_path / "s.zarr/ome", target, kind="instance")
    np.testing.assert_array_equal(out, data)
    # plain group of levels with voxel_size attrs
    grp = root.require_group("plain")
    volumes.create_array(grp, "s0", shape=fine.shape, dtype="u1", attrs={"voxel_size": [2, 2, 2]})
    grp["s0"][...] = fine
    volumes.create_array(grp, "s1", shape=data.shape, dtype="u1", attrs={"voxel_size": [8, 8, 8]})
    out = read_aligned(tmp_path / "s.zarr/plain", target, kind="instance")  # s0 (not coarser) then downsampled
    np.testing.assert_array_equal(out, data)
    with pytest.raises(InputError, match="neither a zarr array nor a zarr group"):
        read_aligned(tmp_path / "s.zarr/missing", target, kind="instance")
