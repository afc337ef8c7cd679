"""Patches for training: class-balanced sampling, augmentation, batches, validation tiles.

Pure functions of numpy arrays and a ``numpy.random.Generator``. The trainer
derives one generator per iteration from ``(seed, iteration)``, so a resumed
run draws exactly the batches an uninterrupted run would have drawn.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from csc_common.geometry import Shape3, int3

from csc_trainer.io import CropSource, class_cells


@dataclass(frozen=True)
class ClassIndex:
    """Where one class occurs across the training crops (coarse cells), for balanced sampling."""

    name: str
    crop: np.ndarray  # (n,) crop index per cell
    start: np.ndarray  # (n, 3) world start of each cell, nm
    size: np.ndarray  # (n, 3) cell size, nm
    positives: int
    annotated: int

    @property
    def fraction(self) -> float:
        return self.positives / self.annotated if self.annotated else 0.0


def index_classes(crops: Sequence[CropSource], classes: Sequence[str], patch: Sequence[int]) -> list[ClassIndex]:
    """Scan each annotated (crop, class) once, one z slab at a time; keep only coarse cells."""
    out = []
    for name in classes:
        crop_idx, starts, sizes = [], [], []
        pos = tot = 0
        for i, crop in enumerate(crops):
            src = crop.labels.get(name)
            if src is None:
                continue
            world, size, p, t = class_cells(src, crop.grid, patch)
            crop.stats[name] = {"positives": p, "voxels": t}
            crop_idx.append(np.full(len(world), i))
            starts.append(world)
            sizes.append(np.repeat(size[None], len(world), 0))
            pos += p
            tot += t
        out.append(
            ClassIndex(
                name,
                np.concatenate(crop_idx) if crop_idx else np.zeros(0, int),
                np.concatenate(starts) if starts else np.zeros((0, 3)),
                np.concatenate(sizes) if sizes else np.zeros((0, 3)),
                pos,
                tot,
            )
        )
    return out


def sample_location(
    rng: np.random.Generator,
    crops: Sequence[CropSource],
    index: Sequence[ClassIndex],
    patch: Sequence[int],
    *,
    class_balance: float,
) -> tuple[int, Shape3]:
    """(crop index, patch start in that crop's grid voxels) for one training patch.

    With probability ``class_balance`` a class is drawn uniformly among the
    classes present somewhere, then one of its positive cells, and the patch
    is centred on a random point of that cell; otherwise a crop is drawn in
    proportion to its volume and the centre uniformly inside it. The centre
    always lies inside the crop; the patch may extend past it (EM context,
    masked labels).
    """
    present = [c for c in index if len(c.crop)]
    if present and rng.random() < class_balance:
        cls = present[int(rng.integers(len(present)))]
        j = int(rng.integers(len(cls.crop)))
        ci = int(cls.crop[j])
        world = cls.start[j] + rng.random(3) * cls.size[j]
        grid = crops[ci].grid
        centre = np.floor(grid.world_to_index(world)).astype(int)
        centre = np.clip(centre, 0, np.asarray(grid.shape) - 1)
    else:
        vols = np.array([c.grid.num_voxels for c in crops], float)
        ci = int(rng.choice(len(crops), p=vols / vols.sum()))
        centre = np.floor(rng.random(3) * np.asarray(crops[ci].grid.shape)).astype(int)
    return ci, int3(centre - np.asarray(patch) // 2)


def augment(
    raw: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    dims: int,
    transpose_z: bool,
    jitter: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random flips, in-plane 90° rotations, axis transposes and intensity jitter.

    ``raw`` is ``(Z,Y,X)``; ``target``/``mask`` ``(K,Z,Y,X)`` get the same
    spatial transform. Z is flipped only for 3D models; Z is swapped with an
    in-plane axis only when ``transpose_z`` (isotropic voxels, cubic patch).
    """
    arrays = [raw[None], target, mask]
    flip_axes = [a for a, on in ((1, dims == 3), (2, True), (3, True)) if on and rng.random() < 0.5]
    if flip_axes:
        arrays = [np.flip(a, axis=tuple(flip_axes)) for a in arrays]
    square = raw.shape[1] == raw.shape[2]
    k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    if k:
        arrays = [np.rot90(a, k, axes=(2, 3)) for a in arrays]
    if transpose_z and dims == 3:
        perm = rng.permutation(3)
        arrays = [np.transpose(a, (0, *(1 + perm))) for a in arrays]
    r, t, m = (np.ascontiguousarray(a) for a in arrays)
    r = r[0]
    if jitter > 0:
        contrast = 1.0 + rng.uniform(-jitter, jitter)
        brightness = rng.uniform(-jitter, jitter)
        r = (r * np.float32(contrast) + np.float32(brightness)).astype(np.float32)
    return r, t, m


def make_batch(
    rng: np.random.Generator,
    crops: Sequence[CropSource],
    index: Sequence[ClassIndex],
    classes: Sequence[str],
    patch: Sequence[int],
    batch_size: int,
    *,
    class_balance: float,
    augment_on: bool,
    dims: int,
    transpose_z: bool,
    jitter: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training batch: raw ``(B,1,Z,Y,X)``, target and mask ``(B,K,Z,Y,X)``, all float32."""
    raws, targets, masks = [], [], []
    for _ in range(batch_size):
        ci, start = sample_location(rng, crops, index, patch, class_balance=class_balance)
        r, t, m = crops[ci].read_patch(start, patch, classes)
        if augment_on:
            r, t, m = augment(r, t, m, rng, dims=dims, transpose_z=transpose_z, jitter=jitter)
        raws.append(r[None])
        targets.append(t)
        masks.append(m)
    return np.stack(raws), np.stack(targets), np.stack(masks)


def patch_starts(grid_shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int, int]]:
    """Patch starts tiling a crop grid (last tile flush with the end; small crops get one centred tile)."""
    axes = []
    for n, p in zip(grid_shape, patch, strict=True):
        if n <= p:
            axes.append([(n - p) // 2])
        else:
            axes.append(sorted(set(list(range(0, n - p, p)) + [n - p])))
    return [(z, y, x) for z in axes[0] for y in axes[1] for x in axes[2]]


def validation_tiles(crops: Sequence[CropSource], patch: Sequence[int], limit: int) -> list[tuple[int, tuple]]:
    """Up to ``limit`` fixed (crop index, start) tiles spread evenly over the validation crops."""
    tiles = [(i, s) for i, c in enumerate(crops) for s in patch_starts(c.grid.shape, patch)]
    if len(tiles) <= limit:
        return tiles
    pick = np.linspace(0, len(tiles) - 1, limit).round().astype(int)
    return [tiles[i] for i in pick]
