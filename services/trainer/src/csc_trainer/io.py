"""The trainer's storage edge: training crops of a dataset manifest as lazy patch sources.

A :class:`CropSource` holds open zarr array handles (metadata only) for the EM
level and the label level closest to the target voxel size; each patch read
touches only the chunks it needs and resamples on the fly (EM linear, labels
nearest, UPSTREAM.md §2.3), so memory does not grow with the number of crops.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.classes import TESTED_CLASSES, ClassKind, is_known
from csc_common.errors import InputError
from csc_common.geometry import Geometry
from csc_common.views import CropEntry, DatasetView
from csc_common.volumes import choose_level, open_array, read_levels, read_resampled

log = logging.getLogger("csc.train")


@dataclass(frozen=True)
class LabelSource:
    """One annotated class of one crop, at the level chosen for the target voxel size."""

    name: str
    path: str
    array: Any
    geometry: Geometry


@dataclass
class CropSource:
    """One training crop: its grid at the target voxel size, the EM and the annotated classes."""

    crop_id: int
    dataset: str
    grid: Geometry
    em: Any
    em_geometry: Geometry
    em_scale: float
    labels: dict[str, LabelSource]
    zarr_root: Path
    em_path: str
    crop_path: str
    stats: dict[str, Any] = field(default_factory=dict)

    def read_patch(
        self, start: Sequence[int], shape: Sequence[int], classes: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """EM, targets and mask of the patch at grid index ``start`` (may run past the crop).

        Returns raw ``(Z,Y,X)`` float32 scaled to [0, 1], target ``(K,Z,Y,X)``
        float32 0/1 and mask ``(K,Z,Y,X)`` float32: 1 where class k is annotated
        in this crop and the voxel lies inside its label array (UPSTREAM.md §5.4).
        """
        g = self.grid
        geom = Geometry(g.voxel_size, g.index_to_world(start), shape)
        raw = read_resampled(self.em, self.em_geometry, geom, order=1, fill=0.0) * np.float32(self.em_scale)
        target = np.zeros((len(classes), *shape), np.float32)
        mask = np.zeros((len(classes), *shape), np.float32)
        for k, name in enumerate(classes):
            src = self.labels.get(name)
            if src is None:
                continue  # unannotated here: mask stays 0
            lab = read_resampled(src.array, src.geometry, geom, order=0, fill=0)
            target[k] = lab > 0
            mask[k] = inside_mask(src.geometry, geom)
        return raw.astype(np.float32, copy=False), target, mask


def inside_mask(source: Geometry, target: Geometry) -> np.ndarray:
    """1 where a target voxel's nearest source voxel lies inside the source array."""
    axes = []
    for t0, tv, n, s0, sv, sn in zip(
        target.translation,
        target.voxel_size,
        target.shape,
        source.translation,
        source.voxel_size,
        source.shape,
        strict=True,
    ):
        c = (t0 + np.arange(n) * tv - s0) / sv
        axes.append(((c >= -0.5) & (c < sn - 0.5)).astype(np.float32))
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


def em_scale_for(dtype: Any) -> float:
    """Scale bringing EM of ``dtype`` to [0, 1] (the original's raw value transform)."""
    dt = np.dtype(dtype)
    return 1.0 / float(np.iinfo(dt).max) if dt.kind in "ui" else 1.0


def crop_path_of(crop: CropEntry) -> str:
    """The crop group (e.g. ``recon-1/labels/groundtruth/crop7``) holding the crop's per-class label groups."""
    parents = {c.path.rstrip("/").rsplit("/", 1)[0] for c in crop.classes if c.path}
    return sorted(parents)[0] if parents else ""


def training_crop_entries(ds: DatasetView, *, crop_ids: Sequence[int] = ()) -> list[CropEntry]:
    """The manifest's train-split crops (optionally only ``crop_ids``); InputError when none."""
    crops = [c for c in ds.crops_of("train") if c.id is not None]
    if crop_ids:
        known = {c.id for c in crops}
        missing = sorted(set(crop_ids) - known)
        if missing:
            raise InputError(
                f"{ds.where}: no training crop(s) {', '.join(map(str, missing))} "
                f"(training crops: {', '.join(str(c.id) for c in crops) or 'none'})"
            )
        crops = [c for c in crops if c.id in set(crop_ids)]
    if not crops:
        raise InputError(f"{ds.where}: no training crops (split 'train') to train on")
    return crops


def open_crop(ds: DatasetView, crop: CropEntry, classes: Sequence[str], voxel_size: Sequence[float]) -> CropSource:
    """Open one training crop lazily at ``voxel_size`` (nothing but metadata is read)."""
    if crop.id is None:
        raise InputError(f"{ds.where}: a region of {crop.dataset} is not a training crop")
    entry = ds.dataset(crop.dataset)
    em_level = choose_level(entry.as_levels(), voxel_size)
    em_array = entry.level_array(em_level.path)
    em = open_array(em_array)
    if tuple(em.shape) != em_level.geometry.shape:
        raise InputError(f"{em_array}: shape {em.shape} does not match the manifest's {list(em_level.geometry.shape)}")
    annotated = [c for c in crop.classes if c.path]
    if not annotated:
        raise InputError(f"{ds.where}: training crop {crop.id} has no label paths")
    labels: dict[str, LabelSource] = {}
    wanted = set(classes)
    for c in annotated:
        if c.name not in wanted or c.path is None:
            continue
        level = choose_level(read_levels(entry.zarr / c.path), voxel_size)
        arr = open_array(entry.zarr / c.path / level.path)
        labels[c.name] = LabelSource(c.name, c.path, arr, level.geometry)
    return CropSource(
        crop_id=crop.id,
        dataset=crop.dataset,
        grid=crop.box.covering_grid(voxel_size),
        em=em,
        em_geometry=em_level.geometry,
        em_scale=em_scale_for(em.dtype),
        labels=labels,
        zarr_root=entry.zarr,
        em_path=entry.em_path,
        crop_path=crop_path_of(crop),
    )


def class_cells(src: LabelSource, grid: Geometry, patch: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Where a class occurs, coarsely: positive cells (world starts and size, nm), positive/total voxels.

    Cells are half a patch wide, so a patch centred in a positive cell sees
    the class. The label is read in z slabs, keeping memory to one slab.
    """
    lv = np.asarray(src.geometry.voxel_size)
    cell = np.maximum(1, np.floor(np.asarray(patch) * np.asarray(grid.voxel_size) / lv / 2)).astype(int)
    shape = np.asarray(src.geometry.shape)
    n_cells = -(-shape // cell)
    starts: list[np.ndarray] = []
    positives = 0
    for cz in range(int(n_cells[0])):
        z0, z1 = cz * cell[0], min((cz + 1) * cell[0], shape[0])
        slab = np.asarray(src.array[z0:z1]) > 0
        positives += int(slab.sum())
        pad = [(0, cell[0] - slab.shape[0]), (0, (-shape[1]) % cell[1]), (0, (-shape[2]) % cell[2])]
        slab = np.pad(slab, pad)
        occ = np.asarray(slab.reshape(1, cell[0], n_cells[1], cell[1], n_cells[2], cell[2]).any(axis=(1, 3, 5)))[0]
        yx = np.argwhere(occ)
        if len(yx):
            starts.append(np.column_stack([np.full(len(yx), cz), yx]))
    idx = np.concatenate(starts) if starts else np.zeros((0, 3), int)
    world = np.asarray(src.geometry.translation) + idx * cell * lv
    return world.astype(np.float64), (cell * lv).astype(np.float64), positives, int(np.prod(shape))


def check_classes(classes: Sequence[str], crops: Sequence[CropEntry]) -> None:
    """Unknown or never-annotated classes are bad input (the original fails late on them)."""
    unknown = [c for c in classes if not is_known(c)]
    if unknown:
        raise InputError(
            f"--classes: unknown class(es) {', '.join(unknown)}; expected names of the challenge's "
            f"class table (e.g. {', '.join(TESTED_CLASSES[:6])}, ...)"
        )
    annotated = {c.name for crop in crops for c in crop.classes if c.path}
    missing = [c for c in classes if c not in annotated]
    if missing:
        raise InputError(
            f"--classes: {', '.join(missing)} annotated in no training crop "
            f"(annotated: {', '.join(sorted(annotated)) or 'none'})"
        )


def class_kinds(classes: Sequence[str], crops: Sequence[CropEntry]) -> dict[str, ClassKind]:
    """The kind the dataset manifest records for each of ``classes`` (its one record of class meaning)."""
    kinds = {c.name: c.kind for crop in crops for c in crop.classes}
    return {name: kinds[name] for name in classes}
