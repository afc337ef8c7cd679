"""Geometry: where a voxel grid sits in the world. zyx order, nanometres, everywhere.

One small frozen value type used by every stage, so nobody re-derives voxel
boxes. Conventions (OME-NGFF 0.4, as the CellMap bucket uses them):

* index ``i`` maps to world ``translation + i * voxel_size`` (the coordinate
  transform of a level); a downsampled level carries its own translation;
* the *box* of a grid is ``[translation, translation + shape * voxel_size)`` —
  the crop box of the challenge's crop manifests.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from csc_common.errors import GeometryError

Vec3 = tuple[float, float, float]
Shape3 = tuple[int, int, int]
Slices3 = tuple[slice, slice, slice]

# Tolerance for "this float is really an integer voxel index" decisions.
_EPS = 1e-6


def vec3(values: Iterable[float], what: str = "vector") -> Vec3:
    """Three finite floats (z, y, x); GeometryError naming ``what`` otherwise."""
    vals = [float(v) for v in values]
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise GeometryError(f"{what} must be 3 finite numbers (z, y, x), got {vals!r}")
    return vals[0], vals[1], vals[2]


def shape3(values: Iterable[float], what: str = "shape") -> Shape3:
    """Three non-negative integers (z, y, x); integral floats (8.0) are accepted."""
    raw = list(values)

    def ok(v: float) -> bool:
        return not isinstance(v, bool) and math.isfinite(float(v)) and float(v) == int(v) and int(v) >= 0

    if len(raw) != 3 or not all(ok(v) for v in raw):
        raise GeometryError(f"{what} must be 3 non-negative integers (z, y, x), got {raw!r}")
    return int(raw[0]), int(raw[1]), int(raw[2])


def int3(values: Iterable[float]) -> Shape3:
    """Three integers (z, y, x), signed (voxel offsets, indices)."""
    raw = [int(v) for v in values]
    if len(raw) != 3:
        raise GeometryError(f"expected 3 integers (z, y, x), got {raw!r}")
    return raw[0], raw[1], raw[2]


def slices3(starts: Iterable[int], stops: Iterable[int]) -> Slices3:
    """``(slice(z0, z1), slice(y0, y1), slice(x0, x1))`` from per-axis starts and stops."""
    a, b = [int(v) for v in starts], [int(v) for v in stops]
    if len(a) != 3 or len(b) != 3:
        raise GeometryError(f"expected 3 starts and 3 stops, got {a!r} and {b!r}")
    return slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2])


def covering_shape(size_nm: Sequence[float], voxel_size: Sequence[float]) -> Shape3:
    """Voxels per axis needed to cover ``size_nm``: ``ceil(size / voxel_size)``, at least 1.

    The one rule for "box -> voxel grid" (the predictor's output grid, the
    trainer's crop grid, the viewer's reference grid). A size within 1e-6
    voxels of an integer is that integer, so float noise never adds a voxel.
    """
    s, v = vec3(size_nm, "size"), vec3(voxel_size, "voxel_size")
    n = [max(1, math.ceil(a / b - _EPS)) for a, b in zip(s, v, strict=True)]
    return n[0], n[1], n[2]


@dataclass(frozen=True, init=False)
class Box:
    """An axis-aligned world box ``[start, stop)`` in nm (zyx)."""

    start: Vec3
    stop: Vec3

    def __init__(self, start: Iterable[float], stop: Iterable[float]) -> None:
        object.__setattr__(self, "start", vec3(start, "box start"))
        object.__setattr__(self, "stop", vec3(stop, "box stop"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Box":
        try:
            return cls(data["start"], data["stop"])
        except KeyError as exc:
            raise GeometryError(f"box lacks field {exc.args[0]!r}") from None

    def to_json(self) -> dict[str, list[float]]:
        return {"start": list(self.start), "stop": list(self.stop)}

    @property
    def size(self) -> Vec3:
        return vec3(b - a for a, b in zip(self.start, self.stop, strict=True))

    def is_empty(self) -> bool:
        return any(b <= a for a, b in zip(self.start, self.stop, strict=True))

    def intersect(self, other: "Box") -> "Box | None":
        """Overlap of two boxes, or None where they do not overlap."""
        start = (max(a, b) for a, b in zip(self.start, other.start, strict=True))
        stop = (min(a, b) for a, b in zip(self.stop, other.stop, strict=True))
        box = Box(start, stop)
        return None if box.is_empty() else box

    def grow(self, margin_nm: Sequence[float]) -> "Box":
        """This box widened by ``margin_nm`` on every side."""
        m = vec3(margin_nm, "margin")
        return Box(
            (a - d for a, d in zip(self.start, m, strict=True)), (b + d for b, d in zip(self.stop, m, strict=True))
        )

    def union(self, other: "Box") -> "Box":
        return Box(
            (min(a, b) for a, b in zip(self.start, other.start, strict=True)),
            (max(a, b) for a, b in zip(self.stop, other.stop, strict=True)),
        )

    @staticmethod
    def union_all(boxes: Iterable["Box"]) -> "Box":
        """The smallest box covering every box of ``boxes`` (GeometryError when there is none)."""
        it = iter(boxes)
        out = next(it, None)
        if out is None:
            raise GeometryError("no boxes to unite")
        for b in it:
            out = out.union(b)
        return out

    def covering_grid(self, voxel_size: Sequence[float]) -> "Geometry":
        """The grid of ``voxel_size`` anchored at this box's start and covering it (`covering_shape`)."""
        return Geometry(voxel_size, self.start, covering_shape(self.size, voxel_size))


@dataclass(frozen=True, init=False)
class Geometry:
    """A voxel grid: voxel size (nm), translation of voxel 0 (nm), shape (voxels); all zyx.

    The constructor takes any sequences (lists from JSON, numpy arrays) and
    stores validated tuples, so callers never convert by hand.
    """

    voxel_size: Vec3
    translation: Vec3
    shape: Shape3

    def __init__(self, voxel_size: Iterable[float], translation: Iterable[float], shape: Iterable[float]) -> None:
        vs = vec3(voxel_size, "voxel_size")
        if any(v <= 0 for v in vs):
            raise GeometryError(f"voxel_size must be positive, got {list(vs)}")
        object.__setattr__(self, "voxel_size", vs)
        object.__setattr__(self, "translation", vec3(translation, "translation"))
        object.__setattr__(self, "shape", shape3(shape))

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
            return cls(data["voxel_size"], data["translation"], data["shape"])
        except KeyError as exc:
            raise GeometryError(f"geometry lacks field {exc.args[0]!r}") from None

    # -- boxes and coordinates -------------------------------------------
    @property
    def box(self) -> Box:
        """The crop box ``[translation, translation + shape * voxel_size)``."""
        stop = (t + n * v for t, n, v in zip(self.translation, self.shape, self.voxel_size, strict=True))
        return Box(self.translation, stop)

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def world_to_index(self, world: Sequence[float]) -> np.ndarray:
        """Continuous voxel index of a world point (index i sits at translation + i * vs)."""
        return (np.asarray(world, float) - np.asarray(self.translation)) / np.asarray(self.voxel_size)

    def index_to_world(self, index: Sequence[float]) -> np.ndarray:
        return np.asarray(self.translation) + np.asarray(index, float) * np.asarray(self.voxel_size)

    def slices_for(self, box: Box, *, clip: bool = True) -> Slices3:
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
        return slices3(lo, hi)

    def subgrid(self, slices: Sequence[slice]) -> "Geometry":
        """Geometry of ``array[slices]`` (slices may extend past the array)."""
        starts = [0 if s.start is None else s.start for s in slices]
        stops = [n if s.stop is None else s.stop for s, n in zip(slices, self.shape)]
        return Geometry(
            self.voxel_size, self.index_to_world(starts), (b - a for a, b in zip(starts, stops, strict=True))
        )

    def same_voxel_size(self, other: "Geometry | Sequence[float]") -> bool:
        """The challenge's test for "no resampling needed": ``np.allclose`` with its default tolerances."""
        vs = other.voxel_size if isinstance(other, Geometry) else other
        return bool(np.allclose(vs, self.voxel_size))


def snap_offset(source_translation: Sequence[float], target: Geometry) -> Shape3:
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
    return int3(off)


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
