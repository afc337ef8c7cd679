from collections.abc import Callable

import numpy as np
import pytest
from csc_predictor.tiling import (
    FLIPS,
    blend_weights,
    infer_probabilities,
    sigmoid,
    sliding_window,
    tile_grid,
    tile_starts,
    weight_sum,
)


@pytest.mark.parametrize(
    "extent,tile,overlap", [(16, 16, 0.5), (17, 16, 0.25), (40, 16, 0.0), (40, 16, 0.5), (100, 7, 0.3)]
)
def test_tile_starts_cover_the_extent_and_end_at_it(extent: int, tile: int, overlap: float) -> None:
    starts = tile_starts(extent, tile, overlap=overlap)
    covered = np.zeros(extent, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()
    assert starts[0] == 0 and starts[-1] == extent - tile
    assert starts == sorted(set(starts))


def test_tile_starts_stride_follows_overlap() -> None:
    assert tile_starts(64, 16, overlap=0.5) == list(range(0, 49, 8))
    assert tile_starts(64, 16, overlap=0.0) == [0, 16, 32, 48]


def test_tile_starts_rejects_a_region_smaller_than_the_tile() -> None:
    with pytest.raises(ValueError, match="smaller than the tile"):
        tile_starts(10, 16, overlap=0.25)


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
def test_blend_weights_are_positive_peak_at_the_centre(blend: str) -> None:
    w = blend_weights((8, 12, 1), blend)
    assert w.shape == (8, 12, 1) and w.min() > 0 and w.max() == pytest.approx(1.0)
    if blend != "constant":
        assert w[4, 6, 0] > w[0, 0, 0]
        np.testing.assert_allclose(w, w[::-1, ::-1, :], rtol=1e-6)


def _pointwise(batch: np.ndarray) -> np.ndarray:
    """A 'model' whose logits depend only on the voxel: two classes, x and -2x."""
    return np.concatenate([batch, -2.0 * batch], axis=1)


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_sliding_window_of_a_pointwise_model_is_exact(blend: str, batch_size: int) -> None:
    raw = np.random.default_rng(0).normal(size=(20, 23, 9)).astype(np.float32)
    out = sliding_window(raw, _pointwise, tile=(8, 8, 8), n_classes=2, overlap=0.5, blend=blend, batch_size=batch_size)
    np.testing.assert_allclose(out[0], sigmoid(raw), atol=1e-6)
    np.testing.assert_allclose(out[1], sigmoid(-2 * raw), atol=1e-6)


def test_flip_tta_of_a_flip_equivariant_model_changes_nothing() -> None:
    raw = np.random.default_rng(1).normal(size=(12, 12, 12)).astype(np.float32)
    a = sliding_window(raw, _pointwise, tile=(8, 8, 8), n_classes=2, tta=False)
    b = sliding_window(raw, _pointwise, tile=(8, 8, 8), n_classes=2, tta=True)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_flip_tta_averages_a_position_dependent_model() -> None:
    def ramp(batch: np.ndarray) -> np.ndarray:  # logit = index along x inside the tile: not flip-equivariant
        x = np.broadcast_to(np.arange(batch.shape[-1], dtype=np.float32), batch.shape)
        return np.ascontiguousarray(x - batch.shape[-1] / 2)

    raw = np.zeros((8, 8, 8), np.float32)
    out = sliding_window(raw, ramp, tile=(8, 8, 8), n_classes=1, tta=True)
    # Flipping x maps index i to 7 - i, so the mean of sigmoid(i - 4) and sigmoid(3 - i) is symmetric.
    np.testing.assert_allclose(out[0, 0, 0, :], out[0, 0, 0, ::-1], atol=1e-6)


def test_sliding_window_checks_the_model_output_shape() -> None:
    raw = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="model returned shape"):
        sliding_window(raw, lambda b: b[:, :, :4], tile=(8, 8, 8), n_classes=1)


def test_tile_grid_is_c_order_product() -> None:
    grid = list(tile_grid((8, 12, 8), (8, 8, 8), overlap=0.5))
    assert grid == [(0, 0, 0), (0, 4, 0)]


def _old_sliding_window(
    raw: np.ndarray,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    tile: tuple[int, int, int],
    n_classes: int,
    overlap: float,
    blend: str,
    batch_size: int,
    tta: bool,
) -> np.ndarray:
    """The blending as first written (before issue 20): temporaries per tile, the weight sum added per tile."""
    weights = blend_weights(tile, blend)  # type: ignore[arg-type]
    acc = np.zeros((n_classes, *raw.shape), np.float32)
    wsum = np.zeros(raw.shape, np.float32)
    starts = list(tile_grid(raw.shape, tile, overlap=overlap))
    for b in range(0, len(starts), batch_size):
        group = starts[b : b + batch_size]
        batch = np.stack([raw[z : z + tile[0], y : y + tile[1], x : x + tile[2]] for z, y, x in group])[:, None]
        if tta:
            flipped = []
            for axes in FLIPS:
                x = np.ascontiguousarray(np.flip(batch, axis=axes)) if axes else batch
                p = 0.5 * (np.tanh(0.5 * infer(x)) + 1.0)
                flipped.append(np.flip(p, axis=axes) if axes else p)
            probs = sum(flipped[1:], flipped[0]) / len(FLIPS)  # added in FLIPS order, as before
        else:
            probs = 0.5 * (np.tanh(0.5 * infer(batch)) + 1.0)
        for (z, y, x), p in zip(group, probs, strict=True):
            sl = (slice(z, z + tile[0]), slice(y, y + tile[1]), slice(x, x + tile[2]))
            acc[(slice(None), *sl)] += p * weights
            wsum[sl] += weights
    return acc / wsum


def _mixing(batch: np.ndarray) -> np.ndarray:
    """A 'model' that mixes neighbours and position: three classes, not pointwise, not flip-equivariant."""
    ramp = np.arange(batch.shape[-1], dtype=np.float32) / batch.shape[-1]
    a = 3.0 * batch + np.roll(batch, 1, axis=2) - ramp
    b = np.tanh(batch * np.roll(batch, -2, axis=4)) * 4.0
    c = -2.0 * batch + ramp[::-1]
    return np.concatenate([a, b, c], axis=1).astype(np.float32)


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
@pytest.mark.parametrize(
    "batch_size,tta,overlap", [(1, False, 0.25), (4, False, 0.5), (3, True, 0.25), (2, False, 0.0)]
)
def test_sliding_window_equals_the_old_formula(blend: str, batch_size: int, tta: bool, overlap: float) -> None:
    raw = np.random.default_rng(4).normal(size=(21, 30, 17)).astype(np.float32)
    kw = dict(tile=(8, 12, 8), n_classes=3, overlap=overlap, blend=blend, batch_size=batch_size, tta=tta)
    new = sliding_window(raw, _mixing, **kw)  # type: ignore[arg-type]
    old = _old_sliding_window(raw, _mixing, **kw)
    assert new.dtype == np.float32 and new.shape == (3, 21, 30, 17)
    np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-7)


def test_sliding_window_leaves_its_input_and_the_model_output_alone() -> None:
    raw = np.random.default_rng(5).normal(size=(12, 12, 12)).astype(np.float32)
    before = raw.copy()
    returned: list[tuple[np.ndarray, np.ndarray]] = []

    def keeper(batch: np.ndarray) -> np.ndarray:  # a model that keeps what it returns (e.g. a bound output)
        out = _mixing(batch)
        returned.append((out, out.copy()))
        return out

    sliding_window(raw, keeper, tile=(8, 8, 8), n_classes=3, overlap=0.5, batch_size=3)
    np.testing.assert_array_equal(raw, before)
    assert returned and all(np.array_equal(a, b) for a, b in returned)


@pytest.mark.parametrize("blend", ["gaussian", "linear", "constant"])
def test_weight_sum_is_every_window_added(blend: str) -> None:
    shape, tile = (19, 30, 8), (8, 12, 8)
    want = np.zeros(shape, np.float32)
    w = blend_weights(tile, blend)
    for z, y, x in tile_grid(shape, tile, overlap=0.3):
        want[z : z + 8, y : y + 12, x : x + 8] += w
    got = weight_sum(shape, tile, overlap=0.3, blend=blend)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_blend_weights_are_cached_and_read_only() -> None:
    a, b = blend_weights((8, 12, 4), "gaussian"), blend_weights([8, 12, 4], "gaussian")
    assert a is b and not a.flags.writeable
    with pytest.raises(ValueError):
        a *= 2.0
    assert blend_weights((8, 12, 4), "linear") is not a


def test_sigmoid_is_the_plain_formula_bit_for_bit() -> None:
    x = np.concatenate([np.linspace(-100, 100, 2001), np.random.default_rng(6).normal(scale=8, size=5000)])
    for arr in (x.astype(np.float32), x):  # float32 logits, and float64 ones cast on the way
        before = arr.copy()
        got = sigmoid(arr)
        x32 = np.asarray(arr, dtype=np.float32)
        want = (0.5 * (np.tanh(0.5 * x32) + 1.0)).astype(np.float32)
        assert got.dtype == np.float32 and got is not arr
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(arr, before)


def test_infer_probabilities_returns_a_fresh_array() -> None:
    logits = np.zeros((1, 1, 4, 4, 4), np.float32)
    for tta in (False, True):
        p = infer_probabilities(lambda b: logits, logits, tta=tta)
        assert not np.shares_memory(p, logits) and p.flags.writeable and p.flags.c_contiguous
        np.testing.assert_allclose(p, 0.5)
    assert FLIPS[0] == ()
