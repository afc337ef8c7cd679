"""Blocks: the one tiling of a voxel grid into write regions with read halos.

Every out-of-core loop (the predictor's inference, the postprocessor's
labelling, the packer's resampling) walks a volume block by block. A
:class:`Block` owns the voxels of its ``write`` region — blocks tile the grid
exactly and never overlap, so parallel workers never write the same voxel —
and reads a ``read`` region around it, grown by a halo of context (daisy's
``Block(read_roi, write_roi)`` is the model). Blocks are listed in C order of
their ``index``, a pure function of the shape and block shape, so every shard
of a sharded run sees the same list.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product

from csc_common.errors import GeometryError
from csc_common.geometry import Shape3, Slices3, int3, shape3, slices3


@dataclass(frozen=True)
class Block:
    """One block of a grid: the voxels it writes and the (larger) region it reads, as index slices."""

    index: Shape3
    write: Slices3
    read: Slices3

    @property
    def id(self) -> str:
        """``"z_y_x"`` of the block index: stable names for done markers and logs."""
        return "_".join(map(str, self.index))

    @property
    def write_shape(self) -> Shape3:
        return shape3(s.stop - s.start for s in self.write)

    @property
    def read_shape(self) -> Shape3:
        return shape3(s.stop - s.start for s in self.read)

    @property
    def write_in_read(self) -> Slices3:
        """Where the write region sits inside an array of the read region."""
        return slices3(
            (w.start - r.start for w, r in zip(self.write, self.read, strict=True)),
            (w.stop - r.start for w, r in zip(self.write, self.read, strict=True)),
        )


def aligned_block_shape(block_shape: Sequence[int], chunks: Sequence[int]) -> Shape3:
    """``block_shape`` rounded up to whole ``chunks`` per axis (at least one chunk), so blocks are chunk-aligned."""
    return shape3(max(c, -(-b // c) * c) for b, c in zip(block_shape, chunks, strict=True))


def count_blocks(shape: Sequence[int], block_shape: Sequence[int]) -> int:
    """How many blocks ``block_grid`` gives for this shape (1 for an empty grid)."""
    n = 1
    for s, b in zip(shape, block_shape, strict=True):
        n *= max(1, -(-int(s) // int(b)))
    return n


def iter_block_grid(
    shape: Sequence[int], block_shape: Sequence[int], *, halo: Sequence[int] = (0, 0, 0), clip_read: bool = True
) -> Iterator[Block]:
    """Blocks tiling ``shape`` in C order; each reads its write region grown by ``halo`` voxels per side.

    With ``clip_read`` the read region stops at the grid's faces; without, it
    may run outside (negative starts, stops past the end) and the caller pads.
    An empty axis still gives one (empty) block, so every grid has a block.
    """
    grid, bs, h = shape3(shape), shape3(block_shape, "block shape"), shape3(halo, "halo")
    if any(b < 1 for b in bs):
        raise GeometryError(f"block shape must be positive, got {list(bs)}")
    counts = [max(1, -(-n // b)) for n, b in zip(grid, bs, strict=True)]
    for idx in product(*(range(c) for c in counts)):
        lo = [i * b for i, b in zip(idx, bs, strict=True)]
        hi = [min(a + b, n) for a, b, n in zip(lo, bs, grid, strict=True)]
        rlo = [a - m for a, m in zip(lo, h, strict=True)]
        rhi = [b + m for b, m in zip(hi, h, strict=True)]
        if clip_read:
            rlo = [max(a, 0) for a in rlo]
            rhi = [min(b, n) for b, n in zip(rhi, grid, strict=True)]
        yield Block(int3(idx), slices3(lo, hi), slices3(rlo, rhi))


def block_grid(
    shape: Sequence[int], block_shape: Sequence[int], *, halo: Sequence[int] = (0, 0, 0), clip_read: bool = True
) -> list[Block]:
    """`iter_block_grid` as a list."""
    return list(iter_block_grid(shape, block_shape, halo=halo, clip_read=clip_read))
