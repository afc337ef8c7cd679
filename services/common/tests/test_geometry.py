import numpy as np
import pytest
from csc_common.errors import GeometryError
from csc_common.geometry import Box, Geometry, paste_offset, snap_offset


def test_box_and_index_round_trip():
    g = Geometry((1.74, 2.0, 2.0), (23837.13, 7599.0, 35999.0), (600, 600, 600))
    assert g.box.start == (23837.13, 7599.0, 35999.0)
    assert g.box.stop == pytest.approx((23837.13 + 1044.0, 8799.0, 37199.0))
    idx = np.array([10.0, 20.0, 30.0])
    assert np.allclose(g.world_to_index(g.index_to_world(idx)), idx)
    assert g.num_voxels == 600**3


def test_rejects_bad_values():
    with pytest.raises(GeometryError, match="voxel_size"):
        Geometry((0, 1, 1), (0, 0, 0), (1, 1, 1))
    with pytest.raises(GeometryError, match="shape"):
        Geometry((1, 1, 1), (0, 0, 0), (1.5, 1, 1))
    with pytest.raises(GeometryError, match="translation"):
        Geometry((1, 1, 1), (0, float("nan"), 0), (1, 1, 1))


def test_json_round_trip_and_missing_field():
    g = Geometry((8, 8, 8), (4.5, 0, -12), (3, 4, 5))
    assert Geometry.from_json(g.to_json()) == g
    with pytest.raises(GeometryError, match="translation"):
        Geometry.from_json({"voxel_size": [1, 1, 1], "shape": [1, 1, 1]})


def test_intersection_and_union():
    a = Box((0, 0, 0), (10, 10, 10))
    b = Box((5, -5, 9), (20, 5, 30))
    assert a.intersect(b) == Box((5, 0, 9), (10, 5, 10))
    assert a.intersect(Box((10, 0, 0), (12, 1, 1))) is None
    assert a.union(b) == Box((0, -5, 0), (20, 10, 30))


def test_slices_for_clips_and_rounds_outward():
    g = Geometry((4, 4, 4), (2, 2, 2), (10, 10, 10))
    box = Box((3, 2, -100), (10, 42, 100))
    assert g.slices_for(box) == (slice(0, 2), slice(0, 10), slice(0, 10))
    assert g.slices_for(box, clip=False) == (slice(0, 2), slice(0, 10), slice(-26, 25))


def test_subgrid():
    g = Geometry((2, 2, 2), (100, 0, 0), (8, 8, 8))
    sub = g.subgrid((slice(2, 4), slice(0, 8), slice(-1, 3)))
    assert sub == Geometry((2, 2, 2), (104, 0, -2), (2, 8, 4))


def test_same_voxel_size_uses_the_challenge_tolerance():
    g = Geometry((1.74, 2, 2), (0, 0, 0), (1, 1, 1))
    assert g.same_voxel_size((1.74 * (1 + 1e-6), 2, 2))
    assert not g.same_voxel_size(Geometry((1.76, 2, 2), (0, 0, 0), (1, 1, 1)))


@pytest.mark.parametrize(
    ("src", "target_t", "vs", "expected"),
    [
        # identical origin
        ((100.0, 100.0, 100.0), (100.0, 100.0, 100.0), 2.0, (0, 0, 0)),
        # source 3 voxels after the target, plus a sub-voxel remainder that snaps down
        ((107.5, 100.0, 100.0), (100.0, 100.0, 100.0), 2.0, (3, 0, 0)),
        # source before the target: 95 snaps down to 94, d = -6 nm = -3 voxels
        ((95.0, 100.0, 100.0), (100.0, 100.0, 100.0), 2.0, (-3, 0, 0)),
    ],
)
def test_snap_offset_rule(src, target_t, vs, expected):
    target = Geometry((vs, vs, vs), target_t, (10, 10, 10))
    assert snap_offset(src, target) == expected


def test_snap_offset_hand_computed_on_real_translation():
    # UPSTREAM §8.3: snapped = floor(t/vs)*vs; d = snapped - t_target; off = sign(d)*floor(|d|/vs)
    target = Geometry((1.74, 2.0, 2.0), (23837.13, 7599.0, 35999.0), (600, 600, 600))
    # z: 23854.53/1.74 = 13709.5 -> snapped 23853.66, d = 16.53 = 9.5 voxels -> 9
    # y: 7592 is on the grid, d = -7 nm = -3.5 voxels -> -3 (floor of |d|, then the sign)
    src = (23837.13 + 1.74 * 10, 7599.0 - 7.0, 35999.0)
    assert snap_offset(src, target) == (9, -3, 0)


def test_paste_offset_crops_and_pads():
    src = np.arange(8).reshape(2, 2, 2) + 1
    out = paste_offset(src, (1, -1, 0), (3, 3, 3))
    assert out.shape == (3, 3, 3)
    assert out[1, 0, 0] == src[0, 1, 0]
    assert out[2, 0, 1] == src[1, 1, 1]
    assert out.sum() == src[:, 1, :].sum()
    assert paste_offset(src, (5, 0, 0), (3, 3, 3)).sum() == 0
