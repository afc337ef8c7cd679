"""Sliding-window inference on an in-memory region: tiles, blending weights, batching, flip TTA.

Pure numpy: takes a normalised raw region and an ``infer`` callable (a batch
``(N, C, Z, Y, X)`` float32 -> per-class logits ``(N, K, Z, Y, X)``) and returns
blended probabilities. Overlapping tiles are weighted by a window that falls
off towards the tile border, where a "same"-padded network sees the least
context, so seams disappear and each voxel gets the prediction of the tiles
that see it best (the original predicts non-overlapping tiles, unblended).
"""

import functools
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
    """Separable weight window for one tile (max 1, never below ``_MIN_WEIGHT``), read-only.

    Cached: a run calls this once per block with the same tile, and the window is as big as a tile.
    """
    return _blend_weights(tuple(int(n) for n in tile), blend)


@functools.lru_cache(maxsize=8)
def _blend_weights(tile: tuple[int, ...], blend: Blend) -> np.ndarray:
    wz, wy, wx = (_axis_window(n, blend) for n in tile)
    w = wz[:, None, None] * wy[None, :, None] * wx[None, None, :]
    w.setflags(write=False)  # shared between calls: nobody may scale it in place
    return w


def weight_sum(shape: Sequence[int], tile: Sequence[int], *, overlap: float, blend: Blend) -> np.ndarray:
    """Sum of the blending windows of every tile of ``tile_grid(shape, tile)`` at each voxel, ``shape`` float32.

    The window is a product of per-axis windows and the grid a product of per-axis starts, so the
    sum is the product of per-axis sums: three short 1D sums instead of adding a tile-sized window
    into the region once per tile.
    """
    sums = []
    for n, t in zip(shape, tile, strict=True):
        n, t = int(n), int(t)
        w, s = _axis_window(t, blend), np.zeros(n, np.float32)
        for start in tile_starts(n, t, overlap=overlap):
            s[start : start + t] += w
        sums.append(s)
    sz, sy, sx = sums
    return sz[:, None, None] * sy[None, :, None] * sx[None, None, :]


def tile_grid(shape: Sequence[int], tile: Sequence[int], *, overlap: float) -> Iterator[tuple[int, int, int]]:
    """Every tile start (z, y, x) for a region of ``shape``, C order."""
    per_axis = [tile_starts(int(n), int(t), overlap=overlap) for n, t in zip(shape, tile, strict=True)]
    return itertools.product(*per_axis)  # type: ignore[return-value]


FLIPS: tuple[tuple[int, ...], ...] = tuple(
    tuple(ax for ax, on in zip((2, 3, 4), bits, strict=True) if on) for bits in itertools.product((0, 1), repeat=3)
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large |x|, as a new float32 array.

    ``0.5 * (tanh(x / 2) + 1)`` computed in one output buffer (the same float32 operations in the
    same order as the plain expression, without its three tile-sized temporaries).
    """
    y = np.multiply(x, np.float32(0.5), dtype=np.float32)
    np.tanh(y, out=y)
    y += np.float32(1.0)
    y *= np.float32(0.5)
    return y


def infer_probabilities(infer: Infer, batch: np.ndarray, *, tta: bool) -> np.ndarray:
    """Probabilities for a batch as a new float32 array; with ``tta`` the mean over the 8 axis flips."""
    if not tta:
        return sigmoid(infer(batch))
    acc = sigmoid(infer(batch))  # FLIPS[0] is the identity
    for axes in FLIPS[1:]:
        p = sigmoid(infer(np.ascontiguousarray(np.flip(batch, axis=axes))))
        acc += np.flip(p, axis=axes)
    acc /= np.float32(len(FLIPS))
    return acc


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
    and the weighted sum is divided by the summed weights. Everything around the
    model call works in place (one reused input batch, weighting in the
    probabilities' own buffer, adds into views of the accumulator), so the model
    call is nearly all of the time (``make bench-predict``: ``efficiency``).
    """
    tile = tuple(int(t) for t in tile)
    if raw.ndim != 3 or any(n < t for n, t in zip(raw.shape, tile, strict=True)):
        raise ValueError(f"region {raw.shape} must be 3D and at least the tile {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    weights = blend_weights(tile, blend)
    acc = np.zeros((n_classes, *raw.shape), np.float32)
    starts = list(tile_grid(raw.shape, tile, overlap=overlap))
    size = max(1, batch_size)
    buffer = np.empty((min(size, len(starts)), 1, *tile), np.float32)
    for b in range(0, len(starts), size):
        group = starts[b : b + size]
        batch = buffer[: len(group)]  # a leading slice: still C-contiguous, as the engines want
        for i, (z, y, x) in enumerate(group):
            batch[i, 0] = raw[z : z + tile[0], y : y + tile[1], x : x + tile[2]]
        probs = infer_probabilities(infer, batch, tta=tta)
        if probs.shape != (len(group), n_classes, *tile):
            raise ValueError(f"model returned shape {probs.shape}, expected {(len(group), n_classes, *tile)}")
        np.multiply(probs, weights, out=probs)  # probs is a fresh float32 array (sigmoid's output)
        for (z, y, x), p in zip(group, probs, strict=True):
            view = acc[:, z : z + tile[0], y : y + tile[1], x : x + tile[2]]
            np.add(view, p, out=view)
    np.divide(acc, weight_sum(raw.shape, tile, overlap=overlap, blend=blend), out=acc)
    return acc
