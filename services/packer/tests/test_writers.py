import numpy as np
import pytest
import zarr
from csc_common.errors import SubmissionError
from csc_common.geometry import Geometry
from csc_packer.writers import save_class_index_volume, save_volumes

G = Geometry((8.0, 8.0, 8.0), (16.0, 0.0, 4.5), (4, 5, 6))


def _open(z, path):
    arr = zarr.open_array(str(z / path), mode="r", zarr_format=2)
    return arr[...], dict(arr.attrs)


def test_class_index_volume_becomes_one_binary_array_per_class(tmp_path):
    labels = np.zeros(G.shape, np.uint8)
    labels[0] = 1
    labels[1] = 2
    z = tmp_path / "submission.zarr"
    paths = save_class_index_volume(labels, z, 557, ["ecs", "mito"], geometry=G)
    assert paths == ["crop557/ecs", "crop557/mito"]
    ecs, attrs = _open(z, "crop557/ecs")
    mito, _ = _open(z, "crop557/mito")
    assert ecs.dtype == np.uint8 and ecs[0].all() and not ecs[1:].any() and mito[1].all() and mito.sum() == 30
    assert attrs == {"voxel_size": [8.0, 8.0, 8.0], "translation": [16.0, 0.0, 4.5], "shape": [4, 5, 6]}
    assert (z / ".zgroup").is_file() and (z / "crop557" / ".zgroup").is_file()


def test_list_of_volumes_keeps_instance_ids_wide(tmp_path):
    ids = np.arange(G.num_voxels, dtype=np.int64).reshape(G.shape) + 250
    z = tmp_path / "s.zarr"
    save_volumes(
        [ids, ids > 300],
        z,
        "crop9",
        ["mito", "er"],
        voxel_size=(8, 8, 8),
        translation=(16, 0, 4.5),
        attrs={"note": "hand-made"},
    )
    mito, attrs = _open(z, "crop9/mito")
    er, _ = _open(z, "crop9/er")
    assert mito.dtype == np.uint32 and np.array_equal(mito, ids) and er.dtype == np.uint8
    assert attrs["note"] == "hand-made" and attrs["shape"] == [4, 5, 6]


@pytest.mark.parametrize(
    ("vol", "kw", "message"),
    [
        (np.zeros(G.shape, np.float32), {"geometry": G}, "threshold probabilities first"),
        (np.zeros((4, 5), np.uint8), {"geometry": G}, "expected a 3D volume"),
        (np.zeros((4, 5, 7), np.uint8), {"geometry": G}, r"does not match its geometry \(4, 5, 6\)"),
        (np.zeros(G.shape, np.uint8), {}, "give geometry= or voxel_size="),
        (-np.ones(G.shape, np.int32), {"geometry": G}, "negative values"),
    ],
)
def test_writer_errors(tmp_path, vol, kw, message):
    with pytest.raises(SubmissionError, match=message):
        save_volumes([vol], tmp_path / "s.zarr", 1, ["mito"], **kw)


def test_crop_names_follow_the_one_crop_id_parser(tmp_path):
    from csc_common.errors import InputError
    from csc_packer.writers import crop_group_name

    assert [crop_group_name(c) for c in (557, "557", "crop557")] == ["crop557"] * 3
    with pytest.raises(InputError, match="expected a crop id like 557 or crop557, got 'cropX'"):
        save_volumes([np.zeros(G.shape, np.uint8)], tmp_path / "s.zarr", "cropX", ["er"], geometry=G)
