"""Blockwise label operations whose results do not depend on the block size.

Whole volumes do not fit in memory, so every label operation here walks the
volume in blocks and reads a one-voxel halo around each block to merge the
objects that cross block faces. Object ids are canonical: object ``k`` is the
``k``-th object met in raster (z, y, x) order of its first voxel, exactly the
numbering a whole-array labelling gives. So a volume processed as one block
and the same volume processed in blocks of any size produce identical arrays.

Arrays are "array-likes": numpy arrays (whole mode) or zarr arrays (scratch on
disk, blockwise mode); anything with ``shape``, ``dtype`` and slice get/set.
"""

from collections.abc import Callable, Iterator, Sequence
from itertools import product
from typing import Any

import numpy as np
from csc_common.blocks import Block, count_blocks, iter_block_grid
from csc_common.geometry import Shape3, Slices3, int3, shape3
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ArrayLike = Any
Slices = Slices3

CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def structure(connectivity: int) -> np.ndarray:
    """The 3x3x3 neighbourhood of a 6-, 18- or 26-connectivity."""
    if connectivity not in CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    return ndimage.generate_binary_structure(3, CONNECTIVITY_RANK[connectivity])


def block_shape(shape: Sequence[int], block: int | None) -> Shape3:
    """Cubes of side ``block``, or (``None``) one block covering the whole ``shape``."""
    if block is None or block <= 0:
        return shape3(max(int(n), 1) for n in shape)
    return block, block, block


def blocks_of(shape: Sequence[int], block: int | None, *, halo: int = 0) -> Iterator[Block]:
    """The ``csc_common.blocks`` tiling of ``shape`` in raster order, reads grown by ``halo`` (clipped)."""
    return iter_block_grid(shape, block_shape(shape, block), halo=(halo, halo, halo))


def label_dtype(count: int) -> np.dtype:
    """uint32 ids, uint64 only where they would not fit (never uint8: ids > 255 stay distinct)."""
    return np.dtype(np.uint32) if count < 2**32 - 1 else np.dtype(np.uint64)


def _first_positions(lab: np.ndarray, n: int) -> np.ndarray:
    """Flat position of the first voxel of labels 1..n, labels numbered in order of first appearance."""
    flat = lab.ravel()
    runmax = np.maximum.accumulate(flat)
    first = np.flatnonzero(np.diff(runmax, prepend=runmax.dtype.type(0)) > 0)
    if len(first) != n or (n and not np.array_equal(flat[first], np.arange(1, n + 1, dtype=flat.dtype))):
        raise AssertionError("local labels are not in order of first appearance")
    return first


def relabel_by_appearance(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Any integer/bool label block -> ids 1..n in order of first appearance (0 stays 0)."""
    uniq, first, inv = np.unique(values.ravel(), return_index=True, return_inverse=True)
    nz = np.flatnonzero(uniq != 0)
    rank = np.zeros(len(uniq), dtype=np.int64)
    rank[nz[np.argsort(first[nz], kind="stable")]] = np.arange(1, len(nz) + 1)
    return rank[inv.ravel()].reshape(values.shape), len(nz)


def _face_offsets(st: np.ndarray, axis: int) -> list[tuple[int, int, int]]:
    """Neighbour offsets with +1 along ``axis`` (the pairs that cross a low face of a block)."""
    out = []
    for d in product((-1, 0, 1), repeat=3):
        if d[axis] == 1 and st[d[0] + 1, d[1] + 1, d[2] + 1]:
            out.append(int3(d))
    return out


def _pairs_in(ext: np.ndarray, offsets: list[tuple[int, int, int]]) -> np.ndarray:
    """Distinct (a, b) label pairs of nonzero, different neighbours at ``offsets`` inside ``ext``."""
    found = []
    for d in offsets:
        src = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(d, ext.shape, strict=True))
        dst = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(d, ext.shape, strict=True))
        a, b = ext[src], ext[dst]
        sel = (a != 0) & (b != 0) & (a != b)
        if sel.any():
            found.append(np.stack([a[sel], b[sel]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)


def cross_block_pairs(prov: ArrayLike, *, connectivity: int, block: int | None) -> np.ndarray:
    """Pairs of provisional ids that touch across a block face (edges and corners included)."""
    shape = prov.shape
    if count_blocks(shape, block_shape(shape, block)) == 1:
        return np.zeros((0, 2), dtype=np.int64)
    st = structure(connectivity)
    offsets = [_face_offsets(st, ax) for ax in range(3)]
    pairs = []
    for b in blocks_of(shape, block, halo=1):  # one voxel of context: the neighbours across each face
        sl, ext_sl = b.write, b.read
        ext = None
        for ax in range(3):
            if sl[ax].start == 0:
                continue
            if ext is None:
                ext = np.asarray(prov[ext_sl])
            lo = sl[ax].start - 1 - ext_sl[ax].start
            slab_sl = tuple(slice(lo, lo + 2) if i == ax else slice(None) for i in range(3))
            pairs.append(_pairs_in(ext[slab_sl], offsets[ax]))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def merge_provisional(n_prov: int, first_flat: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, int]:
    """Provisional id -> final id lookup table (0 -> 0), merged objects share one id.

    Final ids follow the raster order of each object's first voxel, so they do
    not depend on how the volume was cut into blocks.
    """
    if n_prov == 0:
        return np.zeros(1, dtype=np.int64), 0
    if len(pairs):
        graph = coo_matrix(
            (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(n_prov, n_prov)
        )
        n, comp = connected_components(graph, directed=False)
    else:
        n, comp = n_prov, np.arange(n_prov)
    key = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(key, comp, first_flat)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(1, n + 1)
    table = np.zeros(n_prov + 1, dtype=np.int64)
    table[1:] = rank[comp]
    return table, int(n)


LocalLabeler = Callable[[Block], tuple[np.ndarray, int]]


def label_blockwise(
    local: LocalLabeler,
    shape: Sequence[int],
    out_factory: Callable[[np.dtype], ArrayLike],
    scratch_factory: Callable[[np.dtype], ArrayLike],
    *,
    connectivity: int,
    block: int | None,
    halo: int = 0,
) -> tuple[ArrayLike, int]:
    """Globally unique, canonical ids from per-block labellings, merged across block faces.

    ``local(block)`` labels the write region of one block (it may read ``block.read``,
    grown by ``halo``): ids 1..n in order of first appearance. Blocks are numbered
    provisionally (offset by the ids used so far), the face pairs are unioned, and a
    lookup table writes the final ids to ``out_factory(dtype)``.
    """
    shape = shape3(shape)
    n_vox = int(np.prod(shape, dtype=np.int64))
    prov = scratch_factory(label_dtype(n_vox))
    firsts = []
    offset = 0
    for b in blocks_of(shape, block, halo=halo):
        sl = b.write
        lab, n = local(b)
        pos = _first_positions(lab, n)
        if n:
            coords = np.unravel_index(pos, lab.shape)
            glob = tuple(c + s.start for c, s in zip(coords, sl, strict=True))
            firsts.append(np.ravel_multi_index(glob, shape).astype(np.int64))
            lab = lab.astype(prov.dtype, copy=False)
            if offset:
                lab[lab > 0] += prov.dtype.type(offset)
        prov[sl] = lab
        offset += n
    first_flat = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    pairs = cross_block_pairs(prov, connectivity=connectivity, block=block)
    table, count = merge_provisional(offset, first_flat, pairs)
    dtype = label_dtype(count)
    table = table.astype(dtype)
    out = out_factory(dtype)
    for b in blocks_of(shape, block):
        out[b.write] = table[np.asarray(prov[b.write])]
    return out, count


def components(
    mask: ArrayLike,
    out_factory: Callable[[np.dtype], ArrayLike],
    scratch_factory: Callable[[np.dtype], ArrayLike],
    *,
    connectivity: int,
    block: int | None,
) -> tuple[ArrayLike, int]:
    """Connected components of ``mask != 0`` (6/18/26-connectivity), canonical ids."""
    st = structure(connectivity)

    def local(b: Block) -> tuple[np.ndarray, int]:
        lab, n = ndimage.label(np.asarray(mask[b.write]) != 0, structure=st)
        return lab, int(n)

    return label_blockwise(local, mask.shape, out_factory, scratch_factory, connectivity=connectivity, block=block)


def object_sizes(labels: ArrayLike, count: int, *, block: int | None) -> np.ndarray:
    """Voxel count per id 0..count."""
    sizes = np.zeros(count + 1, dtype=np.int64)
    for b in blocks_of(labels.shape, block):
        sizes += np.bincount(np.asarray(labels[b.write]).ravel().astype(np.int64), minlength=count + 1)[: count + 1]
    return sizes


def apply_table(labels: ArrayLike, table: np.ndarray, out: ArrayLike, *, block: int | None) -> ArrayLike:
    """``out = table[labels]`` block by block."""
    for b in blocks_of(labels.shape, block):
        out[b.write] = table[np.asarray(labels[b.write])]
    return out


def bounding_boxes(labels: ArrayLike, count: int, *, block: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per id 1..count: (start, stop) voxel corners; ids absent get start > stop."""
    lo = np.full((count + 1, 3), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full((count + 1, 3), -1, dtype=np.int64)
    for b in blocks_of(labels.shape, block):
        blk = np.asarray(labels[b.write])
        base = np.array([s.start for s in b.write])
        for i, obj in enumerate(ndimage.find_objects(blk, max_label=count)):
            if obj is None:
                continue
            a = base + [s.start for s in obj]
            b = base + [s.stop for s in obj]
            lo[i + 1] = np.minimum(lo[i + 1], a)
            hi[i + 1] = np.maximum(hi[i + 1], b)
    return lo, hi
