"""Storage edge of the predictor: EM reads with edge padding, output arrays (OME-NGFF groups), done markers.

EM chunks that are missing on disk read back as the array's fill value, like
zarr itself (a fetched EM volume is sparse by design, UPSTREAM.md §2.3);
``em_presence`` lets the planner refuse a crop whose EM region is entirely
absent. Outside the EM array's extent the region is edge-padded, so tiles at
a volume border see plausible context instead of a black wall.
"""

import json
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.errors import InputError
from csc_common.fsutil import atomic_write_text
from csc_common.geometry import Geometry, Slices3, slices3
from csc_common.volumes import create_array, multiscale_attrs, open_array, open_group, read_resampled

_EPS = 1e-6


@dataclass(frozen=True)
class EmSource:
    """One EM scale level of one dataset: where its array is and its grid."""

    dataset: str
    array_path: Path
    level_path: str
    geometry: Geometry


def inside_slices(source: Geometry, target: Geometry) -> Slices3 | None:
    """Index slices of ``target`` voxels whose positions fall within ``source``'s sample extent."""
    starts, stops = [], []
    for t0, n_src, vs_src, T, n, V in zip(
        source.translation,
        source.shape,
        source.voxel_size,
        target.translation,
        target.shape,
        target.voxel_size,
        strict=True,
    ):
        first, last = t0, t0 + (n_src - 1) * vs_src
        lo = max(0, math.ceil((first - T) / V - _EPS))
        hi = min(n, math.floor((last - T) / V + _EPS) + 1)
        if hi <= lo:
            return None
        starts.append(lo)
        stops.append(hi)
    return slices3(starts, stops)


def read_em(src: EmSource, target: Geometry, *, arr: Any = None) -> np.ndarray | None:
    """EM resampled (linear) onto ``target`` as float32, edge-padded outside the array; None if wholly outside."""
    inside = inside_slices(src.geometry, target)
    if inside is None:
        return None
    arr = open_array(src.array_path) if arr is None else arr
    sub = target.subgrid(inside)
    try:
        data = read_resampled(arr, src.geometry, sub, order=1, fill=0.0, dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - codec errors from a truncated/corrupt chunk
        raise InputError(f"{src.array_path}: cannot read EM region {sub.box} ({type(exc).__name__}: {exc})") from None
    pad = [(s.start, n - s.stop) for s, n in zip(inside, target.shape, strict=True)]
    if any(a or b for a, b in pad):
        data = np.pad(data, pad, mode="edge")
    return data


def em_presence(src: EmSource, target: Geometry) -> tuple[int, int]:
    """(chunks present on disk, chunks covering ``target``'s region) for the EM level array."""
    zarray = src.array_path / ".zarray"
    try:
        meta = json.loads(zarray.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{zarray}: unreadable zarr array metadata ({exc})") from None
    chunks = meta["chunks"][-3:]
    sep = meta.get("dimension_separator") or "."
    lead = [0] * (len(meta["chunks"]) - 3)
    inside = inside_slices(src.geometry, target)
    if inside is None:
        return 0, 0
    idx = src.geometry.slices_for(target.subgrid(inside).box, clip=True)
    ranges = [range(s.start // c, max(s.start // c + 1, -(-s.stop // c))) for s, c in zip(idx, chunks, strict=True)]
    total = present = 0
    for cz in ranges[0]:
        for cy in ranges[1]:
            for cx in ranges[2]:
                total += 1
                key = sep.join(str(v) for v in (*lead, cz, cy, cx))
                present += os.path.exists(src.array_path / key)
    return present, total


def encode(probs: np.ndarray, dtype: str) -> np.ndarray:
    """Probabilities in [0, 1] as the stored dtype (uint8: round(p * 255)).

    The uint8 path scales and rounds in the one clipped copy (same float32 operations as
    ``rint(clip(p) * 255)``, two block-sized temporaries fewer).
    """
    clipped = np.clip(probs, 0.0, 1.0)
    if dtype == "uint8":
        clipped *= 255.0  # in the array's own float dtype (a Python float scalar does not upcast)
        np.rint(clipped, out=clipped)
        return clipped.astype(np.uint8)
    return clipped.astype(dtype, copy=False)


def encoding_scale(dtype: str) -> float:
    return 1.0 / 255.0 if dtype == "uint8" else 1.0


def ensure_array(zarr_root: Path, path: str, geometry: Geometry, *, chunks: tuple[int, int, int], dtype: str) -> Any:
    """Open ``zarr_root/path`` (``<key>/<class>/s0``) or create it; safe to race.

    The array gets fill 0 and attrs ``voxel_size`` + ``translation`` (for single-array readers); its parent
    ``<key>/<class>`` is an OME-NGFF 0.4 multiscale group with that one level (as the original writes,
    UPSTREAM.md §6). Group attrs are only written when they differ, so concurrent shards rewrite nothing.
    """
    group_path, level = path.rsplit("/", 1)
    ms = multiscale_attrs([(level, geometry)], name=group_path.rsplit("/", 1)[-1])
    root = open_group(zarr_root, mode="a")
    grp = root.require_group(group_path)
    if dict(grp.attrs).get("multiscales") != ms["multiscales"]:
        grp.attrs.update(ms)
    attrs = {"voxel_size": list(geometry.voxel_size), "translation": list(geometry.translation)}
    p = zarr_root / path
    if (p / ".zarray").is_file():
        arr = open_array(p, mode="r+")
        if tuple(arr.shape) == geometry.shape and str(arr.dtype) == dtype and tuple(arr.chunks) == chunks:
            if {k: arr.attrs.get(k) for k in attrs} != attrs:  # same shape, moved grid: keep the attrs current
                arr.attrs.update(attrs)
            return arr
    return create_array(grp, level, shape=geometry.shape, dtype=dtype, chunks=chunks, fill_value=0, attrs=attrs)


class BlockMarkers:
    """Per-block done markers of one plan: ``<dir>/done/<plan hash>/<block>.json``, plus ``<dir>/plan.json``.

    Markers live under the plan's hash, so markers left by a run with other inputs or options are never
    mistaken for this plan's, and concurrent shards never need to delete anything.
    """

    def __init__(self, folder: Path, plan_hash: str) -> None:
        self.folder = folder
        self.hash = plan_hash
        self.done_dir = folder / "done" / plan_hash[:16]

    def plan_hash(self) -> str | None:
        """Hash of the plan last written to ``plan.json`` (None when there is none)."""
        try:
            return json.loads((self.folder / "plan.json").read_text())["hash"]
        except (OSError, json.JSONDecodeError, KeyError):
            return None

    def write_plan(self, plan: dict[str, Any]) -> None:
        self.done_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / "plan.json", json.dumps({"hash": self.hash, **plan}, indent=1) + "\n")

    def done_ids(self) -> set[str]:
        if not self.done_dir.is_dir():
            return set()
        return {f.name[: -len(".json")] for f in self.done_dir.iterdir() if f.name.endswith(".json")}

    def is_done(self, block_id: str) -> bool:
        return (self.done_dir / f"{block_id}.json").is_file()

    def mark_done(self, block_id: str, info: dict[str, Any]) -> None:
        atomic_write_text(self.done_dir / f"{block_id}.json", json.dumps(info) + "\n")

    def records(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        out = []
        for i in ids:
            try:
                out.append(json.loads((self.done_dir / f"{i}.json").read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def forget_other_plans(self) -> None:
        """Delete done markers of every other plan: the blocks they vouch for are about to be overwritten."""
        parent = self.done_dir.parent
        if parent.is_dir():
            for d in parent.iterdir():
                if d.name != self.done_dir.name:
                    shutil.rmtree(d, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
