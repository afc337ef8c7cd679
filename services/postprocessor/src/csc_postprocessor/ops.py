"""The post-processing steps, run whole or blockwise with identical results.

Every step goes through `blockwise` helpers, so processing a test crop whole
(one block) and a whole dataset in blocks share one code path. The
watershed splits one object at a time inside that object's bounding box:
it never sees a block border, so it too is independent of the block size
(memory is bounded by the largest object, not by the volume).
"""

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.blocks import Block, iter_block_grid
from csc_common.fsutil import make_temp_dir
from csc_common.volumes import create_array, open_group
from scipy import ndimage

from csc_postprocessor import blockwise as bw
from csc_postprocessor.steps import Step, Value

ArrayLike = Any
Decode = Callable[[np.ndarray], np.ndarray]


@dataclass
class Workspace:
    """Where intermediate volumes live: numpy in memory (whole) or zarr scratch on disk (blockwise)."""

    shape: tuple[int, int, int]
    block: int | None = None
    scratch_dir: Path | None = None
    _made: list[str] = field(default_factory=list)

    def new(self, dtype: Any) -> ArrayLike:
        if self.block is None or self.scratch_dir is None:
            return np.zeros(self.shape, dtype=dtype)
        name = f"a{len(self._made)}"
        self._made.append(name)
        grp = open_group(self.scratch_dir, mode="a")
        chunks = tuple(min(self.block, 64, max(n, 1)) for n in self.shape)
        return create_array(grp, name, shape=self.shape, dtype=dtype, chunks=chunks)

    def factory(self) -> Callable[[np.dtype], ArrayLike]:
        return self.new

    def blocks(self, *, halo: int = 0) -> list[Block]:
        """The blocks of the workspace (one in whole mode), reads grown by ``halo`` voxels (clipped)."""
        return list(bw.blocks_of(self.shape, self.block, halo=halo))

    def pointwise_blocks(self) -> list[bw.Slices]:
        """Pieces for voxel-wise work: the blocks, or 32-plane slabs in whole mode to bound temporaries."""
        if self.block is not None:
            return [b.write for b in self.blocks()]
        _, y, x = self.shape
        return [b.write for b in iter_block_grid(self.shape, (32, max(y, 1), max(x, 1)))]

    def close(self) -> None:
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)


def make_workspace(shape: tuple[int, int, int], block: int | None, tmp_root: Path | None = None) -> Workspace:
    """In memory (``block`` None), else zarr scratch in a ``.csc-scratch-*`` folder a killed run's successor sweeps."""
    if block is None:
        return Workspace(shape)
    return Workspace(shape, block, make_temp_dir(tmp_root or tempfile.gettempdir(), ".csc-scratch-"))


class _Not:
    """Lazy ``~mask`` view for blockwise reads."""

    def __init__(self, mask: ArrayLike) -> None:
        self.mask, self.shape = mask, mask.shape

    def __getitem__(self, sl: Any) -> np.ndarray:
        return np.asarray(self.mask[sl]) == 0


@dataclass
class Volume:
    """The value flowing through a recipe: its array, what it is, and how many labels it has."""

    data: ArrayLike
    value: Value
    count: int = 0


def threshold(src: ArrayLike, decode: Decode, value: float, ws: Workspace) -> Volume:
    out = ws.new(np.bool_)
    for sl in ws.pointwise_blocks():
        out[sl] = decode(np.asarray(src[sl])) > value
    return Volume(out, "mask")


def components(mask: ArrayLike, connectivity: int, ws: Workspace) -> Volume:
    labels, n = bw.components(mask, ws.factory(), ws.factory(), connectivity=connectivity, block=ws.block)
    return Volume(labels, "labels", n)


def fill_holes(mask: ArrayLike, ws: Workspace) -> Volume:
    """Fill background regions that do not reach the volume border (6-connected background)."""
    bg, n = bw.components(_Not(mask), ws.factory(), ws.factory(), connectivity=6, block=ws.block)
    is_hole = np.ones(n + 1, dtype=bool)
    is_hole[0] = False
    for ax in range(3):
        for idx in (0, bg.shape[ax] - 1):
            face = tuple(idx if i == ax else slice(None) for i in range(3))
            is_hole[np.unique(np.asarray(bg[face]))] = False
    out = ws.new(np.bool_)
    for sl in ws.pointwise_blocks():
        out[sl] = (np.asarray(mask[sl]) != 0) | is_hole[np.asarray(bg[sl])]
    return Volume(out, "mask")


def remove_small(
    vol: Volume, min_size_nm3: float, connectivity: int, voxel_size: tuple[float, float, float], ws: Workspace
) -> Volume:
    """Drop objects whose volume in nm^3 is below ``min_size_nm3``; ids of the rest stay in order."""
    min_voxels = math.ceil(min_size_nm3 / float(np.prod(voxel_size)) - 1e-9)
    labels = vol if vol.value == "labels" else components(vol.data, connectivity, ws)
    sizes = bw.object_sizes(labels.data, labels.count, block=ws.block)
    keep = sizes >= min_voxels
    keep[0] = False
    if vol.value == "mask":
        out = ws.new(np.bool_)
        return Volume(bw.apply_table(labels.data, keep, out, block=ws.block), "mask")
    table = (np.cumsum(keep) * keep).astype(np.int64)
    count = int(keep.sum())
    out = ws.new(bw.label_dtype(count))
    return Volume(bw.apply_table(labels.data, table.astype(out.dtype), out, block=ws.block), "labels", count)


def default_h_nm(voxel_size: tuple[float, float, float]) -> float:
    """Two voxels of the finest axis: splits necks at least that much thinner than the objects."""
    return 2.0 * min(voxel_size)


def split_object(
    obj: np.ndarray, *, voxel_size: tuple[float, float, float], h_nm: float, connectivity: int
) -> tuple[np.ndarray, int]:
    """Split one object by a watershed on its distance transform, seeded at its h-maxima.

    Returns local ids 1..k (k = 1 where there is nothing to split). Seeds are
    the regional maxima of the anisotropic distance transform (nm) deeper than
    ``h_nm``, so a neck between two touching blobs splits them and a bumpy
    surface does not.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = ndimage.distance_transform_edt(np.pad(obj, 1), sampling=voxel_size)[1:-1, 1:-1, 1:-1]
    # Cheap exit: regional maxima lie inside the non-strict local maxima; one connected set of those
    # means at most one seed, so nothing to split (most objects) and no costly reconstruction.
    peaks = (dist == ndimage.maximum_filter(dist, size=3, mode="constant")) & obj
    if ndimage.label(peaks, structure=np.ones((3, 3, 3), bool))[1] <= 1:
        return obj.astype(np.int64), 1
    seeds = h_maxima(dist, h_nm).astype(bool) & obj
    markers, k = ndimage.label(seeds, structure=np.ones((3, 3, 3), bool))
    if k <= 1:
        return obj.astype(np.int64), 1
    ws = watershed(-dist, markers, mask=obj, connectivity=bw.CONNECTIVITY_RANK[connectivity])
    ws[obj & (ws == 0)] = 1
    ws, k = bw.relabel_by_appearance(ws)
    return ws, k


def watershed(
    vol: Volume, connectivity: int, h_nm: float | None, voxel_size: tuple[float, float, float], ws: Workspace
) -> Volume:
    """Split touching instances; objects are the mask's components or the given labels."""
    labels = vol if vol.value == "labels" else components(vol.data, connectivity, ws)
    h = default_h_nm(voxel_size) if h_nm is None else float(h_nm)
    lo, hi = bw.bounding_boxes(labels.data, labels.count, block=ws.block)
    out = ws.new(bw.label_dtype(int(np.prod(ws.shape, dtype=np.int64))))
    present = [i for i in range(1, labels.count + 1) if hi[i, 0] >= 0]
    limit = (ws.block or max(ws.shape)) ** 3
    next_id = 0
    # Objects are numbered in raster order, so neighbouring ids sit close together: split them in
    # batches sharing one read/write of their union box (one object per batch where it is large).
    start = 0
    while start < len(present):
        b_lo, b_hi = lo[present[start]].copy(), hi[present[start]].copy()
        stop = start + 1
        while stop < len(present):
            n_lo, n_hi = np.minimum(b_lo, lo[present[stop]]), np.maximum(b_hi, hi[present[stop]])
            if np.prod(n_hi - n_lo) > limit:
                break
            b_lo, b_hi, stop = n_lo, n_hi, stop + 1
        box = tuple(slice(int(a), int(b)) for a, b in zip(b_lo, b_hi, strict=True))
        region_labels = np.asarray(labels.data[box])
        region_out = np.asarray(out[box])
        for i in present[start:stop]:
            sub = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo[i], hi[i], b_lo, strict=True))
            obj = region_labels[sub] == i
            local, k = split_object(obj, voxel_size=voxel_size, h_nm=h, connectivity=connectivity)
            view = region_out[sub]
            view[obj] = local[obj] + next_id
            next_id += k
        out[box] = region_out
        start = stop
    return Volume(out, "labels", next_id)


def run_steps(
    src: ArrayLike, decode: Decode, steps: tuple[Step, ...], *, voxel_size: tuple[float, float, float], ws: Workspace
) -> Volume:
    """Run a validated recipe on an encoded probability volume."""
    vol = Volume(src, "probability")
    for step in steps:
        if step.op == "threshold":
            vol = threshold(vol.data, decode, step.value, ws)
        elif step.op == "fill_holes":
            vol = fill_holes(vol.data, ws)
        elif step.op == "components":
            vol = components(vol.data, step.connectivity, ws)
        elif step.op == "remove_small":
            vol = remove_small(vol, step.min_size_nm3, step.connectivity, voxel_size, ws)
        elif step.op == "watershed":
            vol = watershed(vol, step.connectivity, step.h_nm, voxel_size, ws)
        else:  # pragma: no cover - the schema allows no other op
            raise ValueError(step.op)
    return vol
