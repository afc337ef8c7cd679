import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from csc_common.crops import read_crop_manifest
from csc_common.volumes import read_levels
from csc_fetcher import synthetic


def _arrays(root: Path) -> dict[str, np.ndarray]:
    return {
        str(p.parent.relative_to(root)): zarr.open_array(str(p.parent), mode="r")[:]
        for p in sorted(root.rglob(".zarray"))
    }


def test_same_seed_same_data_other_seed_other_data(tiny_bucket: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthetic.generate(again, seed=0, size="tiny")
    a, b = _arrays(tiny_bucket), _arrays(again)
    assert a.keys() == b.keys() and len(a) > 50
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for name in ("manifest.csv", "test_crop_manifest.csv", "train_crop_manifest.csv"):
        assert (tiny_bucket / name).read_text() == (again / name).read_text()
    s0, s1 = synthetic.build_spec(0, "tiny"), synthetic.build_spec(1, "tiny")
    assert [c.geometry for c in s0.crops] != [c.geometry for c in s1.crops]
    em = s0.em["syn_iso-1"]
    r0 = synthetic.render(synthetic.build_scene(em, 0, 0), em).labels()["cyto"]
    r1 = synthetic.render(synthetic.build_scene(em, 1, 0), em).labels()["cyto"]
    assert (r0 != r1).mean() > 0.05


def test_generate_is_cached_by_stamp(tiny_bucket: Path) -> None:
    assert synthetic.is_generated(tiny_bucket, seed=0, size="tiny")
    assert not synthetic.is_generated(tiny_bucket, seed=1, size="tiny")
    assert not synthetic.is_generated(tiny_bucket, seed=0, size="demo")


def test_bucket_layout_and_ome_ngff(tiny_bucket: Path) -> None:
    spec = synthetic.build_spec(0, "tiny")
    assert len(spec.datasets) >= 2 and len(spec.train_crops()) >= 6 and len(spec.test_crops()) >= 2
    for ds in spec.datasets:
        em = tiny_bucket / ds / f"{ds}.zarr" / "recon-1/em/fibsem-uint8"
        attrs = json.loads((em / ".zattrs").read_text())
        ms = attrs["multiscales"][0]
        assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
        assert [d["path"] for d in ms["datasets"]] == ["s0", "s1", "s2"]
        levels = read_levels(em)
        for fine, coarse in zip(levels, levels[1:], strict=False):
            np.testing.assert_allclose(coarse.geometry.voxel_size, np.multiply(fine.geometry.voxel_size, 2))
            # a 2x-averaged level starts half a finer voxel further on
            np.testing.assert_allclose(
                np.subtract(coarse.geometry.translation, fine.geometry.translation),
                np.divide(fine.geometry.voxel_size, 2),
            )
        a = zarr.open_array(str(em / "s0"), mode="r")
        assert a.dtype == np.uint8 and a.shape == levels[0].geometry.shape
        zarray = json.loads((em / "s0" / ".zarray").read_text())
        assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/" and zarray["compressor"]
        for crop in (c for c in spec.train_crops() if c.dataset == ds):
            cg = tiny_bucket / ds / f"{ds}.zarr" / "recon-1/labels/groundtruth" / f"crop{crop.crop_id}"
            assert sorted(p.name for p in cg.iterdir() if p.is_dir()) == sorted(crop.classes)
            for cls in crop.classes:
                lv = read_levels(cg / cls)
                assert [x.path for x in lv] == ["s0", "s1"]
                assert lv[0].geometry == crop.geometry


def test_anisotropy_and_off_grid_translations() -> None:
    spec = synthetic.build_spec(0, "tiny")
    sizes = {tuple(g.voxel_size) for g in spec.em.values()}
    assert (6.96, 8.0, 8.0) in sizes and (8.0, 8.0, 8.0) in sizes
    for g in [*spec.em.values(), *(c.geometry for c in spec.crops)]:
        t, v = np.array(g.translation), np.array(g.voxel_size)
        assert not np.allclose(t / v, np.round(t / v)), g


def test_classes_unannotated_folder_and_label_values(tiny_bucket: Path) -> None:
    spec = synthetic.build_spec(0, "tiny")
    missing = [(c.crop_id, set(synthetic.CLASSES) - set(c.classes)) for c in spec.train_crops()]
    assert any(m for _, m in missing)
    for cid, m in missing:
        crop = next(c for c in spec.crops if c.crop_id == cid)
        for cls in m:
            assert not (
                tiny_bucket / crop.dataset / f"{crop.dataset}.zarr" / "recon-1/labels/groundtruth" / f"crop{cid}" / cls
            ).exists()
    crop = spec.train_crops()[0]
    base = tiny_bucket / crop.dataset / f"{crop.dataset}.zarr/recon-1/labels/groundtruth/crop{crop.crop_id}"
    for cls in crop.classes:
        a = zarr.open_array(str(base / cls / "s0"), mode="r")[:]
        if cls in synthetic.INSTANCE_CLASSES:
            assert a.dtype == np.uint32
        else:
            assert a.dtype == np.uint8 and set(np.unique(a)) <= {0, 1}


def test_test_truth_held_apart(tiny_bucket: Path) -> None:
    spec = synthetic.build_spec(0, "tiny")
    rows = read_crop_manifest(tiny_bucket / "test_crop_manifest.csv")
    assert {r.crop_id for r in rows} == {c.crop_id for c in spec.test_crops()}
    assert any(r.geometry.voxel_size[1] == 16.0 for r in rows), "one row at a coarser voxel size"
    truth = zarr.open_group(str(tiny_bucket / synthetic.TRUTH_PREFIX), mode="r")
    for r in rows:
        ds = r.dataset
        assert not (tiny_bucket / ds / f"{ds}.zarr/recon-1/labels/groundtruth" / f"crop{r.crop_id}").exists()
        arr = truth[f"crop{r.crop_id}/{r.class_label}"]
        assert arr.shape == r.geometry.shape
        assert tuple(arr.attrs["voxel_size"]) == r.geometry.voxel_size
        assert tuple(arr.attrs["translation"]) == r.geometry.translation
    manifest = (tiny_bucket / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "crop_number,collection,alignment,crop_url,em_url"
    assert len(manifest) - 1 == len(spec.train_crops())
    assert manifest[1].split(",")[3].startswith(f"s3://{synthetic.BUCKET_NAME}/")


@pytest.mark.parametrize("ds", ["syn_iso-1", "syn_aniso-1"])
def test_em_carries_the_signal(ds: str) -> None:
    """Membranes darker than cytoplasm, ECS brighter, organelles distinguishable: learnable."""
    spec = synthetic.build_spec(0, "tiny")
    em = spec.em[ds]
    scene = synthetic.build_scene(em, 0, synthetic.DATASETS.index(next(d for d in synthetic.DATASETS if d.name == ds)))
    r = synthetic.render(scene, em)
    img = synthetic.em_image(scene, r, em, np.random.default_rng(0)).astype(float)
    lab = r.labels()
    cyto = img[lab["cyto"] > 0].mean()
    assert img[lab["ecs"] > 0].mean() > cyto + 20
    assert img[r.pm].mean() < cyto - 25
    assert img[lab["er"] > 0].mean() < cyto - 10
    for cls in ("mito", "nuc"):
        if (lab[cls] > 0).any():
            assert img[lab[cls] > 0].mean() < cyto - 10
