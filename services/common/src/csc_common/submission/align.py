"""Match crop space: put any submitted array onto a test row's grid, by the challenge's rule.

UPSTREAM.md §8.3, shared by the packer and the evaluator so a prediction lands
on exactly the voxels the scorer will compare. Public API (everything else is
private):

``SourceGrid(voxel_size, translation)``
    What is known about where a source array sits; either part may be None
    (``SourceGrid.from_attrs(attrs)`` reads the ``voxel_size|resolution|scale``
    and ``translation|offset`` aliases; ``SourceGrid.of(geometry)``).
``align_array(data, source, target, *, kind) -> np.ndarray``
    Pure: resample ``data`` (on grid ``source``: a Geometry, a SourceGrid or
    None) to ``target`` (a Geometry) and return an array of ``target.shape``.
``read_aligned(path, target, *, kind) -> np.ndarray``
    I/O edge: open a zarr array, an OME-NGFF multiscale group or a plain group
    of levels at ``path``, pick the level, apply the size guard, read it and
    call ``align_array``.
``choose_non_ome_level(candidates, target_voxel_size) -> key``
    The level rule for groups without OME-NGFF metadata.
``check_size_ratio(source_shape, target_shape, *, where)``
    The ``MAX_VOLUME_SIZE_RATIO`` guard (env var, default 16**3).
``centre_pad_crop(data, shape)``
    The shape-only fallback when a source has no voxel size.

The rule, step by step (kinds are ``"instance"`` or ``"semantic"``):

1. Voxel sizes differ (not ``allclose``): rescale by ``source_vs / target_vs``
   per axis with ``skimage.transform.rescale`` (mode constant, preserve range,
   the library's default anti-aliasing): instance classes order 0 and the
   input dtype kept; semantic classes order 1 on float, then ``> 0.5`` (bool).
   Same voxel size: values are kept as they are (the scorer binarises ``> 0``).
   No voxel size: centre pad/crop to the target shape.
2. Offset: snap the source translation down to the target grid, take the
   signed floor of the difference in target voxels
   (``csc_common.geometry.snap_offset``), and paste into a zero array of the
   target shape (``paste_offset``). No translation known: offset 0.

Departure from the original, on purpose: it rescales sources over 500 MB
(as float32) block by block with ``mode="constant"`` per block, which adds
seams at block borders; we rescale whole arrays, the rule its docs describe.
"""

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csc_common.classes import ClassKind, class_kind
from csc_common.errors import GeometryError, InputError
from csc_common.geometry import Geometry, paste_offset, snap_offset
from csc_common.volumes import TRANSLATION_KEYS, VOXEL_SIZE_KEYS, choose_level, parse_multiscales

log = logging.getLogger("csc.align")

SEMANTIC_THRESHOLD = 0.5
DEFAULT_MAX_VOLUME_SIZE_RATIO = float(16**3)


def resample_kind(class_name: str) -> ClassKind:
    """How the challenge resamples a class: nearest for its instance names, linear + threshold otherwise.

    A rule of the scorer (its own INSTANCE_CLASSES decides), not the class's
    kind in a manifest, so the packer and the evaluator resample exactly as it does.
    """
    return class_kind(class_name)


def max_volume_size_ratio() -> float:
    """``MAX_VOLUME_SIZE_RATIO`` from the environment (read per call, like tests expect), default 4096."""
    raw = os.environ.get("MAX_VOLUME_SIZE_RATIO")
    if raw is None or not raw.strip():
        return DEFAULT_MAX_VOLUME_SIZE_RATIO
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"MAX_VOLUME_SIZE_RATIO: not a number: {raw!r}") from None


def _vec_or_none(values: Any) -> tuple[float, float, float] | None:
    if values is None:
        return None
    vals = [float(v) for v in values][-3:]
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise GeometryError(f"expected 3 finite numbers (z, y, x), got {values!r}")
    return vals[0], vals[1], vals[2]


@dataclass(frozen=True)
class SourceGrid:
    """What is known about a source array's grid: voxel size and translation (zyx nm), each maybe None."""

    voxel_size: tuple[float, float, float] | None
    translation: tuple[float, float, float] | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "voxel_size", _vec_or_none(self.voxel_size))
        object.__setattr__(self, "translation", _vec_or_none(self.translation))
        if self.voxel_size is not None and any(v <= 0 for v in self.voxel_size):
            raise GeometryError(f"voxel_size must be positive, got {list(self.voxel_size)}")

    @classmethod
    def of(cls, geometry: Geometry) -> "SourceGrid":
        return cls(geometry.voxel_size, geometry.translation)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], where: str = "") -> "SourceGrid":
        """Read the attribute aliases the challenge accepts (first alias present wins)."""
        vs = next((attrs[k] for k in VOXEL_SIZE_KEYS if k in attrs), None)
        tr = next((attrs[k] for k in TRANSLATION_KEYS if k in attrs), None)
        try:
            return cls(vs, tr)
        except (GeometryError, TypeError, ValueError) as exc:
            raise InputError(f"{where or '<array>'}: bad voxel_size/translation attrs ({exc})") from None


def check_size_ratio(source_shape: Sequence[int], target_shape: Sequence[int], *, where: str = "") -> float:
    """Refuse sources much larger than the target (``MAX_VOLUME_SIZE_RATIO``); returns the ratio.

    Why: a source thousands of times the target's size is a submission at the
    wrong scale and would exhaust memory while being resampled.
    """
    tgt = int(np.prod([int(s) for s in target_shape], dtype=np.int64))
    if tgt == 0:
        raise GeometryError(f"{where or '<array>'}: target shape {tuple(target_shape)} has no voxels")
    src = int(np.prod([int(s) for s in source_shape], dtype=np.int64))
    ratio = src / tgt
    limit = max_volume_size_ratio()
    if ratio > limit:
        raise GeometryError(
            f"{where or '<array>'}: source shape {tuple(source_shape)} is {ratio:.1f}x the target "
            f"{tuple(target_shape)} (limit {limit:g}x, MAX_VOLUME_SIZE_RATIO); downsample your predictions"
        )
    return ratio


def centre_pad_crop(data: np.ndarray, shape: Sequence[int], *, fill: Any = 0) -> np.ndarray:
    """Centre-pad (extra voxel after) then centre-crop ``data`` to ``shape``."""
    pads = []
    for n, t in zip(data.shape, shape, strict=True):
        before = (t - n) // 2 if n < t else 0
        pads.append((before, (t - n - before) if n < t else 0))
    out = np.pad(data, pads, mode="constant", constant_values=fill) if any(a or b for a, b in pads) else data
    sl = tuple(
        slice((m - t) // 2, (m - t) // 2 + t) if m > t else slice(None) for m, t in zip(out.shape, shape, strict=True)
    )
    return out[sl]


def _rescale(data: np.ndarray, factors: Sequence[float], kind: ClassKind) -> np.ndarray:
    from skimage.transform import rescale  # heavy import, only where needed

    if kind == "instance":
        out = rescale(data, tuple(factors), order=0, mode="constant", preserve_range=True)
        return out.astype(data.dtype, copy=False)
    img = data.astype(np.float32) if data.dtype == bool else data
    out = rescale(img, tuple(factors), order=1, mode="constant", preserve_range=True)
    return out > SEMANTIC_THRESHOLD


def align_array(
    data: np.ndarray,
    source: Geometry | SourceGrid | None,
    target: Geometry,
    *,
    kind: ClassKind,
) -> np.ndarray:
    """Return ``data`` resampled and placed on ``target``'s grid (shape ``target.shape``).

    Args:
        data: the source volume (3D).
        source: its grid; None (or a SourceGrid without voxel size) means
            shape-only matching (centre pad/crop).
        target: the test row's geometry.
        kind: ``"instance"`` (nearest, dtype kept) or ``"semantic"`` (linear,
            then > 0.5 when a rescale happens).
    """
    if kind not in ("instance", "semantic"):
        raise ValueError(f"kind must be 'instance' or 'semantic', got {kind!r}")
    if data.ndim != 3:
        raise GeometryError(f"expected a 3D array, got shape {data.shape}")
    grid = SourceGrid.of(source) if isinstance(source, Geometry) else source or SourceGrid(None, None)
    tgt_shape = tuple(target.shape)
    image = data
    if grid.voxel_size is not None:
        if not target.same_voxel_size(grid.voxel_size):
            factors = np.asarray(grid.voxel_size, float) / np.asarray(target.voxel_size, float)
            image = _rescale(image, factors, kind)
    elif image.shape != tgt_shape:
        image = centre_pad_crop(image, tgt_shape)
    offset = snap_offset(grid.translation, target) if grid.translation is not None else (0, 0, 0)
    if any(offset) or image.shape != tgt_shape:
        return paste_offset(image, offset, tgt_shape)
    return image


def choose_non_ome_level(
    candidates: Sequence[tuple[str, Sequence[float] | None]], target_voxel_size: Sequence[float]
) -> str:
    """Pick a level of a group without OME-NGFF metadata.

    Prefer levels not coarser than the target on every axis, then the smallest
    Euclidean distance of voxel sizes; levels without a voxel size come last.
    Ties keep the first candidate (the group's listing order).
    """
    if not candidates:
        raise InputError("no arrays to choose a level from")
    tgt = np.asarray(target_voxel_size, float)
    best_key, best_score = None, None
    for key, vs in candidates:
        if vs is None:
            score = 1e18
        else:
            v = np.asarray(vs, float)[-tgt.size :]
            score = float(np.linalg.norm(v - tgt)) + (0.0 if bool(np.all(v <= tgt)) else 1e6)
        if best_score is None or score < best_score:
            best_key, best_score = key, score
    return str(best_key)


def _open_node(path: Path) -> Any:
    import zarr

    if (path / ".zarray").is_file():
        return zarr.open_array(str(path), mode="r", zarr_format=2)
    if (path / ".zgroup").is_file() or (path / ".zattrs").is_file():
        return zarr.open_group(str(path), mode="r", zarr_format=2)
    raise InputError(f"{path}: neither a zarr array nor a zarr group")


def read_source(path: str | Path, target: Geometry) -> tuple[Any, SourceGrid]:
    """Open the node at ``path`` and pick what to read: (zarr array, its SourceGrid).

    Single array: attrs aliases. OME-NGFF group: the level closest to the
    target voxel size (summed relative difference) with that level's own
    transforms. Other groups: `choose_non_ome_level` over child arrays.
    """
    p = Path(path)
    try:
        node = _open_node(p)
        if hasattr(node, "shape"):
            return node, SourceGrid.from_attrs(dict(node.attrs), str(p))
        attrs = dict(node.attrs)
        arrays = dict(node.arrays())
        if "multiscales" in attrs:
            levels = parse_multiscales(attrs, {k: a.shape for k, a in arrays.items()}, str(p))
            level = choose_level(levels, target.voxel_size)
            return arrays[level.path], SourceGrid.of(level.geometry)
        if not arrays:
            raise InputError(f"{p}: group holds no arrays")
        grids = {k: SourceGrid.from_attrs(dict(a.attrs), f"{p}/{k}") for k, a in arrays.items()}
        key = choose_non_ome_level([(k, g.voxel_size) for k, g in grids.items()], target.voxel_size)
        return arrays[key], grids[key]
    except InputError:
        raise
    except Exception as exc:  # zarr raises many types for corrupt metadata
        raise InputError(f"{p}: unreadable zarr node ({type(exc).__name__}: {exc})") from None


def read_aligned(path: str | Path, target: Geometry, *, kind: ClassKind) -> np.ndarray:
    """Read the prediction at ``path`` and return it on ``target``'s grid (see module doc)."""
    arr, grid = read_source(path, target)
    if len(arr.shape) != 3:
        raise GeometryError(f"{path}: expected a 3D array, got shape {tuple(arr.shape)}")
    check_size_ratio(arr.shape, target.shape, where=str(path))
    if grid.voxel_size is None:
        log.warning("%s: no voxel size attrs; matching by shape only", path)
    if grid.translation is None:
        log.warning("%s: no translation attrs; assuming it starts at the target's origin", path)
    try:
        data = np.asarray(arr[...])
    except Exception as exc:  # corrupt chunk, bad codec
        raise InputError(f"{path}: cannot read array data ({type(exc).__name__}: {exc})") from None
    return align_array(data, grid, target, kind=kind)
