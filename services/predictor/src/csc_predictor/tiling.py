"""Sliding-window inference on an in-memory region: tiles, blending weights, batching, flip TTA.

Pure numpy: takes a normalised raw region and an ``infer`` callable (a batch
``(N, C, Z, Y, X)`` float32 -> per-class logits ``(N, K, Z, Y, X)``) and returns
blended probabilities. Overlapping tiles are weighted by a window that falls
off towards the tile border, where a "same"-padded network sees the least
context, so seams disappear and each voxel gets the prediction of the tiles
that see it best (the original predicts non-overlapping tiles, unblended).
"""

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np

Blend = Literal["gaussian", "linear", "constant"]
Infer = Callable[[np.ndarray], np.ndarray]

# Smallest weight a voxel of a tile gets, so every voxel of the region has a positive weight sum.
_MIN_WEIGHT = 1e-3


def tile_starts(extent: int, tile: int, *, overlap: float) -> list[int]:
    """Start indices of tiles covering ``[0, extent)``; the last tile ends exactly at ``extent``.

    The stride is ``tile * (1 - overlap)`` (at least 1). ``extent`` must be >= ``tile``
    (the caller pads the region to at least one tile).
    """
    if extent < tile:
        raise ValueError(f"region extent {extent} is smaller than the tile {tile}")
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, extent - tile + 1, stride))
    if starts[-1] != extent - tile:
        starts.append(extent - tile)
    return starts


def _axis_window(n: int, blend: Blend) -> np.ndarray:
    if blend == "constant" or n == 1:
        return np.ones(n, np.float32)
    i = np.arange(n, dtype=np.float64)
    if blend == "gaussian":
        sigma = n / 8.0
        w = np.exp(-0.5 * ((i - (n - 1) / 2.0) / sigma) ** 2)
    elif blend == "linear":
        w = np.minimum(i + 1, n - i) / np.ceil(n / 2.0)
    else:
        raise ValueError(f"unknown blend {blend!r}")
    return np.maximum(w / w.max(), _MIN_WEIGHT).astype(np.float32)


def blend_weights(tile: Sequence[int], blend: Blend) -> np.ndarray:
    """Separable weight window for one tile (max 1, never below ``_MIN_WEIGHT``)."""
    wz, wy, wx = (_axis_window(int(n), blend) for n in tile)
    return wz[:, None, None] * wy[None, :, None] * wx[None, None, :]


def tile_grid(shape: Sequence[int], tile: Sequence[int], *, overlap: float) -> Iterator[tuple[int, int, int]]:
    """Every tile start (z, y, x) for a region of ``shape``, C order."""
    per_axis = [tile_starts(int(n), int(t), overlap=overlap) for n, t in zip(shape, tile, strict=True)]
    return itertools.product(*per_axis)  # type: ignore[return-value]


FLIPS: tuple[tuple[int, ...], ...] = tuple(
    tuple(ax for ax, on in zip((2, 3, 4), bits, strict=True) if on) for bits in itertools.product((0, 1), repeat=3)
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large |x|, in float32."""
    x = np.asarray(x, dtype=np.float32)
    return (0.5 * (np.tanh(0.5 * x) + 1.0)).astype(np.float32, copy=False)


def infer_probabilities(infer: Infer, batch: np.ndarray, *, tta: bool) -> np.ndarray:
    """Probabilities for a batch; with ``tta`` the mean over the 8 axis flips."""
    if not tta:
        return sigmoid(infer(batch))
    acc = None
    for axes in FLIPS:
        x = np.ascontiguousarray(np.flip(batch, axis=axes)) if axes else batch
        p = sigmoid(infer(x))
        p = np.flip(p, axis=axes) if axes else p
        acc = p if acc is None else acc + p
    return acc / len(FLIPS)  # type: ignore[operator]


def sliding_window(
    raw: np.ndarray,
    infer: Infer,
    *,
    tile: Sequence[int],
    n_classes: int,
    overlap: float = 0.25,
    blend: Blend = "gaussian",
    batch_size: int = 4,
    tta: bool = False,
) -> np.ndarray:
    """Blended per-class probabilities ``(K, Z, Y, X)`` for a normalised region ``(Z, Y, X)``.

    ``raw`` must be at least one tile in every axis. Tiles are run ``batch_size``
    at a time; each tile's probabilities are weighted by the ``blend`` window
    and the weighted sum is divided by the summed weights.
    """
    tile = tuple(int(t) for t in tile)
    if raw.ndim != 3 or any(n < t for n, t in zip(raw.shape, tile, strict=True)):
        raise ValueError(f"region {raw.shape} must be 3D and at least the tile {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    weights = blend_weights(tile, blend)
    acc = np.zeros((n_classes, *raw.shape), np.float32)
    wsum = np.zeros(raw.shape, np.float32)
    starts = list(tile_grid(raw.shape, tile, overlap=overlap))
    for b in range(0, len(starts), max(1, batch_size)):
        group = starts[b : b + max(1, batch_size)]
        batch = np.stack([raw[z : z + tile[0], y : y + tile[1], x : x + tile[2]] for z, y, x in group])[:, None]
        probs = infer_probabilities(infer, np.ascontiguousarray(batch, dtype=np.float32), tta=tta)
        if probs.shape != (len(group), n_classes, *tile):
            raise ValueError(f"model returned shape {probs.shape}, expected {(len(group), n_classes, *tile)}")
        for (z, y, x), p in zip(group, probs, strict=True):
            sl = (slice(z, z + tile[0]), slice(y, y + tile[1]), slice(x, x + tile[2]))
            acc[(slice(None), *sl)] += p * weights
            wsum[sl] += weights
    acc /= wsum
    return acc
