import numpy as np
import pytest
from csc_predictor.tiling import blend_weights, sigmoid, sliding_window, tile_grid, tile_starts


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
