"""A tiny analytic dataset in the bucket layout, plus its ``dataset`` manifest.

Independent of the fetcher so trainer tests stay small and fast: one dataset,
EM at 8 nm (s0) and 16 nm (s1) with a translation that is not a multiple of the
voxel size, three training crops (one at 4 nm, one lacking ``er``) and one
test crop. Objects are defined in world nm, so every grid rasterises the same
scene and the EM carries the signal (each class has its own intensity).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from csc_common.geometry import Geometry
from csc_common.manifest import new_manifest, now, write_manifest
from csc_common.volumes import open_group, write_multiscale

EM_PATH = "recon-1/em/fibsem-uint8"
GT = "recon-1/labels/groundtruth"
CLASSES = ("mito", "nuc", "ves", "ecs", "cyto", "er")
EM_GEOM = Geometry((8.0, 8.0, 8.0), (4.0, 0.0, 12.0), (48, 48, 48))


def _coords(g: Geometry) -> list[np.ndarray]:
    return np.meshgrid(
        *[t + np.arange(n) * v for t, n, v in zip(g.translation, g.shape, g.voxel_size, strict=True)], indexing="ij"
    )


def scene(g: Geometry) -> dict[str, np.ndarray]:
    """Label volumes (instance ids / 0-1) of the analytic scene on grid ``g``."""
    z, y, x = _coords(g)
    ecs = x > 300 + 20 * np.sin(y / 40)
    nuc = ((z - 200) ** 2 + (y - 200) ** 2 + (x - 150) ** 2) < 70**2
    mito = np.zeros(g.shape, np.uint32)
    for i, (cz, cy, cx) in enumerate([(80, 80, 80), (260, 90, 220), (120, 300, 60), (300, 300, 250)], 1):
        mito[((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) < 50**2] = i
    ves = np.zeros(g.shape, np.uint32)
    for i, (cz, cy, cx) in enumerate([(60, 200, 240), (200, 60, 150), (330, 180, 100), (150, 330, 200)], 1):
        ves[((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) < 24**2] = i
    mito[ecs | nuc] = 0
    ves[ecs | nuc] = 0
    er = (np.abs((y % 96) - 48) < 8) & ~ecs & ~nuc & (mito == 0) & (ves == 0)
    cyto = ~ecs & ~nuc
    nuc_ids = nuc.astype(np.uint32)
    return {
        "mito": mito,
        "nuc": nuc_ids,
        "ves": ves,
        "ecs": ecs.astype(np.uint8),
        "cyto": cyto.astype(np.uint8),
        "er": er.astype(np.uint8),
    }


def em(g: Geometry, seed: int = 0) -> np.ndarray:
    lab = scene(g)
    img = np.full(g.shape, 170.0)
    img[lab["er"] > 0] = 110
    img[lab["ecs"] > 0] = 230
    img[lab["nuc"] > 0] = 90
    img[lab["mito"] > 0] = 50
    img[lab["ves"] > 0] = 15
    img += np.random.default_rng(seed).normal(0, 6, g.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(
    root: Path,
    *,
    crops: Sequence[dict[str, Any]] | None = None,
    n_copies: int = 1,
    instance: Sequence[str] = ("mito", "nuc", "ves"),
) -> Path:
    """Write the fixture under ``root``; returns the dataset manifest path.

    ``crops``: dicts {id, box_start (nm), shape, voxel_size, classes, split};
    ``n_copies`` repeats the training crops under new ids (for RSS benchmarks);
    ``instance``: the classes the manifest records as instance classes.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = "fx-1"
    zroot = root / name / f"{name}.zarr"
    grp = open_group(zroot, "w")
    s1 = Geometry((16.0, 16.0, 16.0), (8.0, 4.0, 16.0), (24, 24, 24))
    write_multiscale(grp, EM_PATH, [(em(EM_GEOM), EM_GEOM), (em(s1, 1), s1)], chunks=(16, 16, 16))
    if crops is None:
        crops = [
            {"id": 1, "start": (68.0, 64.0, 76.0), "shape": (32, 32, 32), "vs": (8.0, 8.0, 8.0), "classes": CLASSES},
            {
                "id": 2,
                "start": (196.0, 160.0, 140.0),
                "shape": (24, 24, 24),
                "vs": (8.0, 8.0, 8.0),
                "classes": tuple(c for c in CLASSES if c != "er"),
            },
            {"id": 3, "start": (100.0, 200.0, 60.0), "shape": (48, 48, 48), "vs": (4.0, 4.0, 4.0), "classes": CLASSES},
            {
                "id": 9,
                "start": (180.0, 180.0, 180.0),
                "shape": (16, 16, 16),
                "vs": (8.0, 8.0, 8.0),
                "classes": CLASSES,
                "split": "test",
            },
        ]
    entries = []
    for copy in range(n_copies):
        for c in crops:
            split = c.get("split", "train")
            if split == "test" and copy:
                continue
            cid = c["id"] + 100 * copy
            g = Geometry(c["vs"], c["start"], c["shape"])
            classes = []
            labels = scene(g) if split == "train" else {}
            for cls in c["classes"]:
                entry: dict[str, Any] = {
                    "name": cls,
                    "kind": "instance" if cls in instance else "semantic",
                    "geometry": g.to_json(),
                }
                if split == "train":
                    path = f"{GT}/crop{cid}/{cls}"
                    write_multiscale(grp, path, [(labels[cls], g)], chunks=(16, 16, 16))
                    entry["path"] = path
                classes.append(entry)
            entries.append({"id": cid, "dataset": name, "split": split, "classes": classes})
    (root / "test_crop_manifest.csv").write_text("crop_name,dataset,class_label,voxel_size,translation,shape\n")
    levels = [{"path": "s0", **EM_GEOM.to_json()}, {"path": "s1", **s1.to_json()}]
    manifest = new_manifest(
        "dataset",
        "fetcher",
        now(),
        args=[],
        source="fixture",
        test_manifest="test_crop_manifest.csv",
        datasets=[{"name": name, "zarr": f"{name}/{name}.zarr", "em": {"path": EM_PATH, "levels": levels}}],
        crops=entries,
    )
    out = root / "dataset.json"
    write_manifest(out, manifest)
    return out


@pytest.fixture(scope="session")
def fixture_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset manifest of the default fixture (shared by the session; treat as read-only)."""
    return make_dataset(tmp_path_factory.mktemp("fixture-data"))


@pytest.fixture(scope="session")
def fixture_scene():
    """The analytic scene function (grid -> label volumes), for tests that need ground truth."""
    return scene


@pytest.fixture(scope="session")
def make_fixture_dataset():
    """The fixture builder itself, for tests that need their own variant."""
    return make_dataset
