import numpy as np
import pytest
from csc_postprocessor import blockwise as bw
from csc_postprocessor import ops
from scipy import ndimage

IDENTITY = staticmethod(lambda a: a.astype(np.float32))


def _blobby(shape=(29, 33, 37), seed=0):
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return (prob - prob.min()) / (prob.max() - prob.min())


def _run(fn, shape, block, tmp_path):
    ws = ops.make_workspace(shape, block, tmp_path)
    try:
        vol = fn(ws)
        return np.asarray(vol.data[...]), vol.count
    finally:
        ws.close()


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_components_match_whole_array_labelling_for_every_block_size(connectivity, tmp_path):
    mask = _blobby() > 0.55
    ref, n = ndimage.label(mask, structure=bw.structure(connectivity))
    assert n > 5
    for block in (None, 5, 8, 16, 64):
        got, count = _run(lambda ws: ops.components(mask, connectivity, ws), mask.shape, block, tmp_path)
        assert count == n
        np.testing.assert_array_equal(got, ref, err_msg=f"block {block}")


def test_diagonal_neighbours_across_a_block_corner_merge_only_at_26(tmp_path):
    mask = np.zeros((8, 8, 8), bool)
    mask[3, 3, 3] = mask[4, 4, 4] = True  # touch only at a corner, which is also a block corner at block=4
    for conn, expect in ((6, 2), (18, 2), (26, 1)):
        for block in (None, 4):
            _, count = _run(lambda ws, c=conn: ops.components(mask, c, ws), mask.shape, block, tmp_path)
            assert count == expect, (conn, block)


def test_ids_above_255_stay_distinct_and_wide(tmp_path):
    mask = np.zeros((4, 40, 40), bool)
    mask[1, ::2, ::2] = True  # 400 isolated voxels
    for block in (None, 7):
        labels, count = _run(lambda ws: ops.components(mask, 6, ws), mask.shape, block, tmp_path)
        assert count == 400
        assert labels.dtype == np.uint32
        assert len(np.unique(labels[mask])) == 400


def test_fill_holes_matches_scipy_and_ignores_block_size(tmp_path):
    mask = np.ones((12, 12, 12), bool)
    mask[4:7, 4:7, 4:7] = False  # enclosed hole
    mask[0:3, 0:3, 0:3] = False  # touches the border: not a hole
    ref = ndimage.binary_fill_holes(mask)
    for block in (None, 4, 5):
        got, _ = _run(lambda ws: ops.fill_holes(mask, ws), mask.shape, block, tmp_path)
        np.testing.assert_array_equal(got.astype(bool), ref)


def test_remove_small_uses_nm3_with_anisotropic_voxels(tmp_path):
    mask = np.zeros((10, 10, 10), bool)
    mask[1, 1, 1:3] = True  # 2 voxels = 2 * 2*1*1 = 4 nm^3
    mask[5:7, 5:7, 5:7] = True  # 8 voxels = 16 nm^3
    labels = ops.Volume(ndimage.label(mask)[0].astype(np.uint32), "labels", 2)
    for block in (None, 3):
        got, count = _run(
            lambda ws: ops.remove_small(labels, 5.0, 26, (2.0, 1.0, 1.0), ws), mask.shape, block, tmp_path
        )
        assert count == 1
        assert set(np.unique(got)) == {0, 1} and got[5, 5, 5] == 1 and got[1, 1, 1] == 0


def test_watershed_splits_touching_balls_whatever_the_block_size(tmp_path, balls):
    prob = balls((30, 30, 44), [(15, 15, 12), (15, 15, 25), (15, 15, 36)], 7.5).astype(np.float32)
    results = []
    for block in (None, 8, 13):

        def fn(ws):
            mask = ops.threshold(prob, IDENTITY, 0.5, ws)
            return ops.watershed(mask, 26, None, (1.0, 1.0, 1.0), ws)

        labels, count = _run(fn, prob.shape, block, tmp_path)
        assert count == 3, block
        assert labels[15, 15, 12] != labels[15, 15, 25] != labels[15, 15, 36]
        results.append(labels)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_watershed_keeps_a_single_ball_whole(balls):
    obj = balls((20, 20, 20), [(10, 10, 10)], 6)
    local, k = ops.split_object(obj, voxel_size=(1.0, 1.0, 1.0), h_nm=2.0, connectivity=26)
    assert k == 1 and set(np.unique(local[obj])) == {1}


def test_relabel_by_appearance_orders_ids_by_first_voxel():
    values = np.array([[[0, 900, 900, 7, 0, 300]]])
    out, n = bw.relabel_by_appearance(values)
    assert n == 3
    assert out.tolist() == [[[0, 1, 1, 2, 0, 3]]]


def test_blocks_tile_the_volume_once_whole_or_in_cubes():
    assert [b.write for b in bw.blocks_of((5, 6, 7), None)] == [(slice(0, 5), slice(0, 6), slice(0, 7))]
    cubes = list(bw.blocks_of((10, 4, 9), 4, halo=1))
    assert len(cubes) == 3 * 1 * 3 and cubes[0].index == (0, 0, 0) and cubes[1].index == (0, 0, 1)  # raster order
    seen = np.zeros((10, 4, 9), int)
    for b in cubes:
        seen[b.write] += 1
        assert all(
            r.start == max(w.start - 1, 0) and r.stop == min(w.stop + 1, n)
            for w, r, n in zip(b.write, b.read, (10, 4, 9))
        )
    assert (seen == 1).all()
    assert len(list(bw.blocks_of((0, 4, 4), 2))) == 2 * 2  # an empty axis still gives its (empty) blocks
