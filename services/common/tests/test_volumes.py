import json

import numpy as np
import pytest
from csc_common.errors import InputError
from csc_common.geometry import Geometry
from csc_common.volumes import (
    array_geometry,
    choose_level,
    create_array,
    open_array,
    open_group,
    read_levels,
    read_resampled,
    write_multiscale,
)


def test_writes_zarr2_with_slash_keys_and_explicit_compressor(tmp_path):
    root = open_group(tmp_path / "v.zarr", "w")
    arr = create_array(root, "a", shape=(5, 6, 7), dtype="uint16", chunks=(2, 3, 4), attrs={"voxel_size": [1, 2, 3]})
    arr[...] = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    meta = json.loads((tmp_path / "v.zarr" / "a" / ".zarray").read_text())
    assert meta["zarr_format"] == 2
    assert meta["dimension_separator"] == "/"
    assert meta["compressor"]["id"] == "blosc"
    assert (tmp_path / "v.zarr" / "a" / "0" / "0" / "0").is_file()
    assert (tmp_path / "v.zarr" / ".zgroup").is_file()
    assert array_geometry(open_array(tmp_path / "v.zarr" / "a")) == Geometry((1, 2, 3), (0, 0, 0), (5, 6, 7))


def test_multiscale_round_trip(tmp_path):
    root = open_group(tmp_path / "m.zarr", "w")
    g0 = Geometry((1.74, 2, 2), (10.5, 3.0, 7.25), (8, 8, 8))
    g1 = Geometry((3.48, 4, 4), (10.5 + 0.87, 4.0, 8.25), (4, 4, 4))
    write_multiscale(root, "em", [(np.zeros((8, 8, 8), np.uint8), g0), (np.ones((4, 4, 4), np.uint8), g1)])
    attrs = json.loads((tmp_path / "m.zarr" / "em" / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    levels = read_levels(tmp_path / "m.zarr" / "em")
    assert [lv.path for lv in levels] == ["s0", "s1"]
    assert levels[0].geometry == g0 and levels[1].geometry == g1
    assert choose_level(levels, (4, 4, 4)).path == "s1"
    assert choose_level(levels, (2, 2, 2)).path == "s0"


def test_missing_metadata_is_a_clear_error(tmp_path):
    root = open_group(tmp_path / "m.zarr", "w")
    root.require_group("plain")
    with pytest.raises(InputError, match="no OME-NGFF 'multiscales' metadata"):
        read_levels(tmp_path / "m.zarr" / "plain")
    with pytest.raises(InputError, match="zarr array not found"):
        open_array(tmp_path / "m.zarr" / "nope")
    with pytest.raises(InputError, match="zarr group not found"):
        open_group(tmp_path / "absent.zarr")


def test_read_resampled_identity_shift_and_scale():
    data = np.random.default_rng(0).integers(0, 255, (10, 12, 14)).astype(np.uint8)
    src = Geometry((2, 2, 2), (100, 0, 0), data.shape)
    same = read_resampled(data, src, src, order=0)
    assert same.dtype == np.uint8 and (same == data).all()
    shifted = read_resampled(data, src, Geometry((2, 2, 2), (104, 2, 0), (3, 3, 3)), order=1)
    assert np.allclose(shifted, data[2:5, 1:4, 0:3])
    # coarser target by 2: nearest picks every other voxel (index j -> source 2j)
    coarse = read_resampled(data, src, Geometry((4, 4, 4), (100, 0, 0), (5, 6, 7)), order=0)
    assert (coarse == data[::2, ::2, ::2]).all()
    # outside the source is the fill value
    out = read_resampled(data, src, Geometry((2, 2, 2), (0, 0, 0), (2, 2, 2)), order=1, fill=7)
    assert (out == 7).all()


def test_read_resampled_linear_is_linear():
    z = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 4, 4), np.float32)
    src = Geometry((2, 1, 1), (0, 0, 0), z.shape)
    fine = read_resampled(z, src, Geometry((1, 1, 1), (0, 0, 0), (9, 4, 4)), order=1)
    assert np.allclose(fine[:, 0, 0], np.arange(9) / 2)
