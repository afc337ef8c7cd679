"""Patch reading, masks, sampling and augmentation (csc_trainer.io / csc_trainer.data)."""

import numpy as np
import pytest
from csc_common import views
from csc_common.geometry import Geometry
from csc_common.views import DatasetView
from csc_trainer import data
from csc_trainer.io import inside_mask, open_crop, training_crop_entries

CLASSES = ["mito", "nuc", "ves", "ecs", "cyto", "er"]


@pytest.fixture(scope="module")
def crops(fixture_dataset):
    ds = views.load(fixture_dataset, DatasetView)
    return [open_crop(ds, e, CLASSES, (8.0, 8.0, 8.0)) for e in training_crop_entries(ds)]


def test_training_crops_exclude_test_split(fixture_dataset):
    ds = views.load(fixture_dataset, DatasetView)
    assert [c.id for c in training_crop_entries(ds)] == [1, 2, 3]


def test_unannotated_class_is_masked(crops):
    crop2 = next(c for c in crops if c.crop_id == 2)
    assert "er" not in crop2.labels
    raw, target, mask = crop2.read_patch((0, 0, 0), (8, 8, 8), CLASSES)
    er = CLASSES.index("er")
    assert mask[er].max() == 0 and target[er].max() == 0
    assert mask[CLASSES.index("cyto")].min() == 1
    assert raw.dtype == np.float32 and raw.min() >= 0 and raw.max() <= 1


def test_patch_past_crop_is_masked_but_has_em(crops):
    crop1 = crops[0]
    raw, _, mask = crop1.read_patch((-4, 0, 0), (8, 8, 8), CLASSES)
    assert mask[:, :4].max() == 0 and mask[:, 4:].min() == 1
    assert raw[:4].mean() > 0.1  # EM context exists outside the crop


def test_labels_resampled_from_finer_level_match_scene(crops, fixture_scene):
    # crop 3 is annotated at 4 nm; read at 8 nm its labels must match the scene rasterised at 8 nm.
    crop3 = next(c for c in crops if c.crop_id == 3)
    assert crop3.grid.shape == (24, 24, 24)
    _, target, mask = crop3.read_patch((0, 0, 0), (24, 24, 24), CLASSES)
    g = Geometry((8.0, 8.0, 8.0), crop3.grid.translation, (24, 24, 24))
    want = fixture_scene(g)["nuc"] > 0
    assert mask.min() == 1
    assert (target[CLASSES.index("nuc")] > 0).mean() == pytest.approx(want.mean(), abs=0.02)


def test_inside_mask_counts_voxels_within_source():
    src = Geometry((8.0, 8.0, 8.0), (0.0, 0.0, 0.0), (4, 4, 4))
    tgt = Geometry((8.0, 8.0, 8.0), (-16.0, 0.0, 16.0), (6, 4, 4))
    m = inside_mask(src, tgt)
    assert m.shape == (6, 4, 4)
    assert m[:2].max() == 0 and m[2:6, :, :2].min() == 1 and m[:, :, 2:].max() == 0


def test_class_balanced_sampling_favours_rare_classes(crops):
    index = data.index_classes(crops, CLASSES, (16, 16, 16))
    ves = next(c for c in index if c.name == "ves")
    assert 0 < ves.fraction < 0.05 and len(ves.crop) > 0

    def ves_share(balance: float) -> float:
        rng = np.random.default_rng(0)
        hits = 0
        for _ in range(60):
            ci, start = data.sample_location(rng, crops, index, (16, 16, 16), class_balance=balance)
            centre = np.asarray(start) + 8
            assert np.all(centre >= 0) and np.all(centre < crops[ci].grid.shape)
            _, t, _ = crops[ci].read_patch(start, (16, 16, 16), ["ves"])
            hits += t.any()
        return hits / 60

    assert ves_share(1.0) > ves_share(0.0)


@pytest.mark.parametrize("dims", [2, 3])
def test_augment_moves_raw_and_labels_together(dims):
    rng = np.random.default_rng(3)
    shape = (1, 8, 8) if dims == 2 else (8, 8, 8)
    labels = (rng.random((2, *shape)) > 0.5).astype(np.float32)
    raw = labels[0].copy()
    mask = labels[1:].copy()
    for seed in range(8):
        r, t, m = data.augment(
            raw, labels, mask, np.random.default_rng(seed), dims=dims, transpose_z=dims == 3, jitter=0.0
        )
        assert r.shape == shape and t.shape == (2, *shape)
        np.testing.assert_array_equal(r, t[0])
        np.testing.assert_array_equal(m[0], t[1])


def test_intensity_jitter_changes_only_raw():
    raw = np.full((4, 4, 4), 0.5, np.float32)
    t = np.zeros((1, 4, 4, 4), np.float32)
    r, t2, _ = data.augment(raw, t, t, np.random.default_rng(1), dims=3, transpose_z=False, jitter=0.2)
    assert not np.allclose(r, 0.5) and np.all(t2 == 0)


def test_tiles_cover_the_crop():
    starts = data.patch_starts((20, 8, 4), (8, 8, 8))
    assert [s[0] for s in starts] == [0, 8, 12]
    assert {s[1] for s in starts} == {0} and {s[2] for s in starts} == {-2}
