"""Voxel counts of the fetched ground truth, per (crop, class), for the dataset manifest (``csc get-counts``).

Cheap by design. The challenge's label arrays carry CellMap annotation
metadata in each level's ``.zattrs``: ``cellmap.annotation.complement_counts``
says how many voxels are ``absent`` and ``unknown``, so that everything else
is the class (the annotation schema's own rule: positives = elements minus the
complement). With it, a count is a subtraction on a file the fetch has just
copied. A label array without it (the synthetic data, a hand-made mirror) is
counted from the chunks just copied, one chunk-aligned block at a time, so
memory stays bounded by a block whatever the crop's size.
"""

import json
import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from csc_common import volumes
from csc_common.blocks import aligned_block_shape, iter_block_grid
from csc_common.errors import InputError
from csc_common.views import VoxelCounts

log = logging.getLogger("csc.fetch")
BLOCK = (64, 256, 256)  # voxels read at once when counting contents (rounded up to whole chunks)


def _annotation(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    cellmap = attrs.get("cellmap")
    ann = cellmap.get("annotation") if isinstance(cellmap, Mapping) else None
    return ann if isinstance(ann, Mapping) else {}


def from_metadata(total: int, attrs: Mapping[str, Any]) -> VoxelCounts | None:
    """Counts from ``cellmap.annotation.complement_counts`` of a level's attrs; None where it is not recorded."""
    complement = _annotation(attrs).get("complement_counts")
    if not isinstance(complement, Mapping):
        return None
    try:
        absent, unknown = int(complement.get("absent", 0)), int(complement.get("unknown", 0))
    except (TypeError, ValueError):
        return None
    if min(absent, unknown) < 0 or absent + unknown > total:
        return None  # not a histogram of this array: count the contents instead
    return VoxelCounts(annotated=total - unknown, present=total - absent - unknown)


def _encoding(attrs: Mapping[str, Any]) -> tuple[int, int | None]:
    """The values meaning 'absent' (default 0) and 'unknown' (default none) in the array."""
    kind = _annotation(attrs).get("annotation_type")
    enc = kind.get("encoding") if isinstance(kind, Mapping) else None
    enc = enc if isinstance(enc, Mapping) else {}
    absent, unknown = enc.get("absent", 0), enc.get("unknown")
    return int(absent), (int(unknown) if unknown is not None else None)


def from_contents(arr: Any, attrs: Mapping[str, Any]) -> VoxelCounts:
    """Counts by reading ``arr`` block by block (voxels neither 'absent' nor 'unknown' are the class)."""
    absent, unknown = _encoding(attrs)
    shape = tuple(int(s) for s in arr.shape[-3:])
    lead = (0,) * (arr.ndim - 3)
    n_unknown = n_absent = 0
    for block in iter_block_grid(shape, aligned_block_shape(BLOCK, arr.chunks[-3:])):
        data = np.asarray(arr[(*lead, *block.write)])
        n_absent += int(np.count_nonzero(data == absent))
        if unknown is not None:
            n_unknown += int(np.count_nonzero(data == unknown))
    total = math.prod(shape)
    return VoxelCounts(annotated=total - n_unknown, present=total - n_absent - n_unknown)


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    return doc if isinstance(doc, dict) else {}


def count_level(level_dir: Path) -> VoxelCounts:
    """Counts of one label level array (``.../crop<N>/<class>/s0``): metadata first, else contents.

    The metadata path reads two small JSON files and opens no array (a real fetch has thousands of them).
    """
    attrs = _json(level_dir / ".zattrs")
    try:
        total = math.prod(int(s) for s in _json(level_dir / ".zarray")["shape"][-3:])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{level_dir}: not a zarr array (no .zarray with a shape)") from None
    counted = from_metadata(total, attrs)
    return counted if counted is not None else from_contents(volumes.open_array(level_dir), attrs)


def count_levels(level_dirs: Sequence[Path], *, workers: int = 4) -> list[VoxelCounts]:
    """`count_level` of each folder, in order (a few threads: decompression releases the GIL)."""
    if len(level_dirs) <= 1 or workers <= 1:
        return [count_level(d) for d in level_dirs]
    with ThreadPoolExecutor(max_workers=min(workers, len(level_dirs)), thread_name_prefix="count") as pool:
        return list(pool.map(count_level, level_dirs))
