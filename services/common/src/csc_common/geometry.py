"""Geometry: where a voxel grid sits in the world. zyx order, nanometres, everywhere.

One small frozen value type used by every stage, so nobody re-derives voxel
boxes. Conventions (OME-NGFF 0.4, as the CellMap bucket uses them):

* index ``i`` maps to world ``translation + i * voxel_size`` (the coordinate
  transform of a level); a downsampled level carries its own translation;
* the *box* of a grid is ``[translation, translation + shape * voxel_size)`` —
  the crop box of the challenge's crop manifests.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from csc_common.errors import GeometryError

Vec3 = tuple[float, float, float]
Shape3 = tuple[int, int, int]

# Tolerance for "this float is really an integer voxel index" decisions.
_EPS = 1e-6


def _vec3(values: Sequence[float], what: str) -> Vec3:
    vals = tuple(float(v) for v in values)
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise GeometryError(f"{what} must be 3 finite numbers (z, y, x), got {list(values)!r}")
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class Box:
    """An axis-aligned world box ``[start, stop)`` in nm (zyx)."""

    start: Vec3
    stop: Vec3

    @property
    def size(self) -> Vec3:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def is_empty(self) -> bool:
        return any(b <= a for a, b in zip(self.start, self.stop))

    def intersect(self, other: "Box") -> "Box | None":
        """Overlap of two boxes, or None where they do not overlap."""
        start = tuple(max(a, b) for a, b in zip(self.start, other.start))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop))
        box = Box(start, stop)  # type: ignore[arg-type]
        return None if box.is_empty() else box

    def grow(self, margin_nm: Sequence[float]) -> "Box":
        """This box widened by ``margin_nm`` on every side."""
        m = _vec3(margin_nm, "margin")
        return Box(
            tuple(a - d for a, d in zip(self.start, m)),  # type: ignore[arg-type]
            tuple(b + d for b, d in zip(self.stop, m)),  # type: ignore[arg-type]
        )

    def union(self, other: "Box") -> "Box":
        return Box(
            tuple(min(a, b) for a, b in zip(self.start, other.start)),  # type: ignore[arg-type]
            tuple(max(a, b) for a, b in zip(self.stop, other.stop)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Geometry:
    """A voxel grid: voxel size (nm), translation of voxel 0 (nm), shape (voxels); all zyx."""

    voxel_size: Vec3
    translation: Vec3
    shape: Shape3

    def __post_init__(self) -> None:
        vs = _vec3(self.voxel_size, "voxel_size")
        tr = _vec3(self.translation, "translation")
        if any(v <= 0 for v in vs):
            raise GeometryError(f"voxel_size must be positive, got {list(vs)}")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or any(s < 0 for s in shape) or any(float(s) != float(o) for s, o in zip(shape, self.shape)):
            raise GeometryError(f"shape must be 3 non-negative integers (z, y, x), got {list(self.shape)!r}")
        object.__setattr__(self, "voxel_size", vs)
        object.__setattr__(self, "translation", tr)
        object.__setattr__(self, "shape", shape)

    # -- serialisation ---------------------------------------------------
    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {
            "voxel_size": list(self.voxel_size),
            "translation": list(self.translation),
            "shape": list(self.shape),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Geometry":
        try:
            return cls(tuple(data["voxel_size"]), tuple(data["translation"]), tuple(data["shape"]))
        except KeyError as exc:
            raise GeometryError(f"geometry lacks field {exc.args[0]!r}") from None

    # -- boxes and coordinates -------------------------------------------
    @property
    def box(self) -> Box:
        """The crop box ``[translation, translation + shape * voxel_size)``."""
        stop = tuple(t + s * v for t, s, v in zip(self.translation, self.shape, self.voxel_size))
        return Box(self.translation, stop)  # type: ignore[arg-type]

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def world_to_index(self, world: Sequence[float]) -> np.ndarray:
        """Continuous voxel index of a world point (index i sits at translation + i * vs)."""
        return (np.asarray(world, float) - np.asarray(self.translation)) / np.asarray(self.voxel_size)

    def index_to_world(self, index: Sequence[float]) -> np.ndarray:
        return np.asarray(self.translation) + np.asarray(index, float) * np.asarray(self.voxel_size)

    def slices_for(self, box: Box, *, clip: bool = True) -> tuple[slice, slice, slice]:
        """Index slices of the voxels whose start lies in ``box`` (outward rounding).

        With ``clip`` the slices are clipped to the array; otherwise they may be
        negative or run past the end (callers pad).
        """
        lo = np.floor(self.world_to_index(box.start) + _EPS).astype(int)
        hi = np.ceil(self.world_to_index(box.stop) - _EPS).astype(int)
        if clip:
            lo = np.clip(lo, 0, self.shape)
            hi = np.clip(hi, 0, self.shape)
        hi = np.maximum(hi, lo)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]

    def subgrid(self, slices: Sequence[slice]) -> "Geometry":
        """Geometry of ``array[slices]`` (slices may extend past the array)."""
        starts = [0 if s.start is None else s.start for s in slices]
        stops = [n if s.stop is None else s.stop for s, n in zip(slices, self.shape)]
        return Geometry(
            self.voxel_size,
            tuple(self.index_to_world(starts)),  # type: ignore[arg-type]
            tuple(b - a for a, b in zip(starts, stops)),  # type: ignore[arg-type]
        )

    def same_voxel_size(self, other: "Geometry | Sequence[float]") -> bool:
        """The challenge's test for "no resampling needed": ``np.allclose`` with its default tolerances."""
        vs = other.voxel_size if isinstance(other, Geometry) else other
        return bool(np.allclose(vs, self.voxel_size))


def snap_offset(source_translation: Sequence[float], target: Geometry) -> tuple[int, int, int]:
    """Voxel offset of a source grid inside a target grid, by the challenge's rule.

    UPSTREAM.md §8.3 step 4, shared by packing and evaluation so both place a
    prediction identically: snap the source translation down to the target
    grid, then take the signed floor of the distance in target voxels. The
    operation order is kept as upstream's so float rounding matches.
    """
    vs = np.asarray(target.voxel_size, dtype=float)
    src = np.asarray(source_translation, dtype=float)
    snapped = np.floor(src / vs) * vs
    d = snapped - np.asarray(target.translation, dtype=float)
    off = np.sign(d) * np.floor(np.abs(d) / vs)
    return tuple(int(v) for v in off)  # type: ignore[return-value]


def paste_offset(source: np.ndarray, offset: Sequence[int], shape: Sequence[int], *, fill: Any = 0) -> np.ndarray:
    """Place ``source`` at voxel ``offset`` inside a new array of ``shape``.

    Source voxels outside the target are cropped; target voxels not covered
    stay ``fill``. No overlap gives an all-``fill`` array.
    """
    out = np.full(tuple(shape), fill, dtype=source.dtype)
    dst, src = [], []
    for o, n_src, n_dst in zip(offset, source.shape, shape):
        a, b = max(o, 0), min(o + n_src, n_dst)
        if b <= a:
            return out
        dst.append(slice(a, b))
        src.append(slice(a - o, b - o))
    out[tuple(dst)] = source[tuple(src)]
    return out
