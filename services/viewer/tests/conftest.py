"""Tiny demo-like pipeline outputs for the viewer's tests, written by the schemas' rules.

One dataset with anisotropic EM (3 x 2 x 2 nm, translation not a multiple of
the voxel size, two levels), a train crop with OME-NGFF label groups
(mito instance, ecs semantic), a test crop with held-apart truth arrays,
predictions (uint8, scale 1/255), processed (uint32 ids, uint8 mask), a
submission zip and a scores manifest. Objects are defined in world nm, so
every volume, whatever its grid, agrees on where they are.
"""

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from csc_common.geometry import Geometry
from csc_common.manifest import artifact, new_manifest, now, write_manifest
from csc_common.volumes import create_array, multiscale_attrs, open_group, write_multiscale

DATASET = "jrc_demo-1"
EM_S0 = Geometry((3.0, 2.0, 2.0), (1.5, 11.0, 7.0), (48, 96, 96))
EM_S1 = Geometry((6.0, 4.0, 4.0), (3.0, 12.0, 8.0), (24, 48, 48))
# Train crop 1: mito at 2x the EM voxel size in y/x, ecs at the EM's.
TRAIN_MITO = Geometry((6.0, 4.0, 4.0), (19.5, 51.0, 47.0), (12, 24, 24))
TRAIN_ECS = Geometry((3.0, 2.0, 2.0), (19.5, 51.0, 47.0), (24, 48, 48))
# Test crop 2 (overlaps the middle of the EM).
TEST_GEOM = Geometry((3.0, 2.0, 2.0), (40.5, 71.0, 67.0), (20, 40, 40))
MITO_CENTRE = np.array([70.0, 111.0, 107.0])  # nm, inside both crops' boxes
MITO_RADIUS = 28.0


def world_grid(g: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (nm) of every voxel of ``g``, as three broadcastable arrays."""
    axes = [g.translation[i] + np.arange(g.shape[i]) * g.voxel_size[i] for i in range(3)]
    return np.meshgrid(*axes, indexing="ij")


def mito_ids(g: Geometry) -> np.ndarray:
    """Two mitochondria: a sphere (id 7) and a slab (id 9) in the low-x corner."""
    z, y, x = world_grid(g)
    d = np.sqrt((z - MITO_CENTRE[0]) ** 2 + (y - MITO_CENTRE[1]) ** 2 + (x - MITO_CENTRE[2]) ** 2)
    out = np.zeros(g.shape, np.uint32)
    out[d < MITO_RADIUS] = 7
    out[(x < MITO_CENTRE[2] - 2 * MITO_RADIUS) & (y > MITO_CENTRE[1])] = 9
    return out


def ecs_mask(g: Geometry) -> np.ndarray:
    """Extracellular space: everything with y below the sphere's top minus a margin."""
    _, y, _ = world_grid(g)
    return (y < MITO_CENTRE[1] - MITO_RADIUS - 6).astype(np.uint8)


def em_values(g: Geometry) -> np.ndarray:
    rng = np.random.default_rng(1)
    em = 150 + rng.normal(0, 12, g.shape)
    em[mito_ids(g) > 0] = 80 + rng.normal(0, 20, g.shape)[mito_ids(g) > 0]
    em[ecs_mask(g) > 0] = 210
    return np.clip(em, 0, 255).astype(np.uint8)


def _write_array(group, name: str, data: np.ndarray, geom: Geometry) -> None:
    create_array(
        group,
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=(16, 32, 32),
        attrs={"voxel_size": list(geom.voxel_size), "translation": list(geom.translation)},
    )[...] = data


def _write_class(zarr_root: Path, crop: str, name: str, data: np.ndarray, geom: Geometry) -> None:
    """The predictor/postprocessor layout: OME-NGFF group ``crop<N>/<class>``, level ``s0`` with attrs too."""
    group = open_group(zarr_root, "a").require_group(f"{crop}/{name}")
    group.attrs.update(multiscale_attrs([("s0", geom)], name=name))
    _write_array(group, "s0", data, geom)


@dataclass(frozen=True)
class Demo:
    root: Path
    dataset: Path
    predictions: Path
    processed: Path
    submission: Path
    scores: Path


def make_demo(root: Path) -> Demo:
    root.mkdir(parents=True, exist_ok=True)
    started = now()
    zpath = root / DATASET / f"{DATASET}.zarr"
    grp = open_group(zpath, "w")
    recon = grp.require_group("recon-1")
    write_multiscale(
        recon.require_group("em"),
        "fibsem-uint8",
        [(em_values(EM_S0), EM_S0), (em_values(EM_S1), EM_S1)],
        chunks=(16, 32, 32),
    )
    labels = recon.require_group("labels").require_group("groundtruth").require_group("crop1")
    write_multiscale(labels, "mito", [(mito_ids(TRAIN_MITO), TRAIN_MITO)])
    write_multiscale(labels, "ecs", [(ecs_mask(TRAIN_ECS), TRAIN_ECS)])
    truth = open_group(root / "ground_truth.zarr", "w")
    t2 = truth.require_group("crop2")
    _write_array(t2, "mito", mito_ids(TEST_GEOM).astype(np.uint64), TEST_GEOM)
    _write_array(t2, "ecs", ecs_mask(TEST_GEOM), TEST_GEOM)
    (root / "test_crop_manifest.csv").write_text(
        "crop_name,dataset,class_label,voxel_size,translation,shape\n"
        f"2,{DATASET},mito,[3.0;2.0;2.0],[40.5;71.0;67.0],[20;40;40]\n"
        f"2,{DATASET},ecs,[3.0;2.0;2.0],[40.5;71.0;67.0],[20;40;40]\n"
    )
    gjson = TEST_GEOM.to_json()
    ds = new_manifest(
        "dataset",
        "fetcher",
        started,
        source="synthetic",
        test_manifest="test_crop_manifest.csv",
        truth="ground_truth.zarr",
        datasets=[
            {
                "name": DATASET,
                "zarr": f"{DATASET}/{DATASET}.zarr",
                "em": {
                    "path": "recon-1/em/fibsem-uint8",
                    "levels": [{"path": f"s{i}", **g.to_json()} for i, g in enumerate((EM_S0, EM_S1))],
                },
            }
        ],
        crops=[
            {
                "id": 1,
                "dataset": DATASET,
                "split": "train",
                "classes": [
                    {
                        "name": "mito",
                        "kind": "instance",
                        "path": "recon-1/labels/groundtruth/crop1/mito",
                        "geometry": TRAIN_MITO.to_json(),
                    },
                    {
                        "name": "ecs",
                        "kind": "semantic",
                        "path": "recon-1/labels/groundtruth/crop1/ecs",
                        "geometry": TRAIN_ECS.to_json(),
                    },
                ],
            },
            {
                "id": 2,
                "dataset": DATASET,
                "split": "test",
                "classes": [
                    {"name": "mito", "kind": "instance", "geometry": gjson},
                    {"name": "ecs", "kind": "semantic", "geometry": gjson},
                ],
            },
        ],
    )
    dpath = root / "dataset.json"
    write_manifest(dpath, ds)
    # predictions: probabilities as uint8 * 1/255, one voxel off in x (a realistic imperfect model)
    open_group(root / "predictions.zarr", "w")
    prob_mito = (np.roll(mito_ids(TEST_GEOM) > 0, 1, axis=2) * 230).astype(np.uint8)
    prob_ecs = (ecs_mask(TEST_GEOM) * 200).astype(np.uint8)
    _write_class(root / "predictions.zarr", "crop2", "mito", prob_mito, TEST_GEOM)
    _write_class(root / "predictions.zarr", "crop2", "ecs", prob_ecs, TEST_GEOM)
    crops = [
        {
            "id": 2,
            "dataset": DATASET,
            "classes": [
                {"name": "mito", "kind": "instance", "path": "crop2/mito/s0", "geometry": gjson},
                {"name": "ecs", "kind": "semantic", "path": "crop2/ecs/s0", "geometry": gjson},
            ],
        }
    ]
    ppath = root / "predictions.json"
    write_manifest(
        ppath,
        new_manifest(
            "predictions",
            "predictor",
            started,
            inputs=[{"kind": "dataset", "path": "dataset.json", "sha256": "0" * 64}],
            zarr="predictions.zarr",
            encoding={"dtype": "uint8", "scale": 1 / 255},
            crops=crops,
        ),
    )
    open_group(root / "processed.zarr", "w")
    _write_class(root / "processed.zarr", "crop2", "mito", (prob_mito > 127).astype(np.uint32) * 3, TEST_GEOM)
    _write_class(root / "processed.zarr", "crop2", "ecs", (prob_ecs > 127).astype(np.uint8), TEST_GEOM)
    qpath = root / "processed.json"
    write_manifest(
        qpath,
        new_manifest(
            "processed",
            "postprocessor",
            started,
            inputs=[{"kind": "predictions", "path": "predictions.json", "sha256": "0" * 64}],
            zarr="processed.zarr",
            crops=crops,
        ),
    )
    # submission: a zip of a zarr v2 group (files at the zip root)
    sub_dir = root / "submission.zarr"
    sub = open_group(sub_dir, "w").require_group("crop2")
    _write_array(sub, "mito", (prob_mito > 127).astype(np.uint8), TEST_GEOM)
    _write_array(sub, "ecs", (prob_ecs > 127).astype(np.uint8), TEST_GEOM)
    zip_path = root / "submission.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(sub_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(sub_dir).as_posix())
    spath = root / "submission.json"
    write_manifest(
        spath,
        new_manifest(
            "submission",
            "packer",
            started,
            inputs=[{"kind": "processed", "path": "processed.json", "sha256": "0" * 64}],
            zip=artifact(zip_path, spath),
            rows=2,
            packed=2,
            missing=[],
        ),
    )
    (root / "result.json").write_text(json.dumps({"overall_score": 0.6}))
    scpath = root / "scores.json"
    write_manifest(
        scpath,
        new_manifest(
            "scores",
            "evaluator",
            started,
            result="result.json",
            overall_score=0.62,
            overall_instance_score=0.55,
            overall_semantic_score=0.7,
            label_scores={
                "mito": {"f1": 0.6, "normalized_hausdorff_distance": 0.5, "combined_score": 0.55},
                "ecs": {"iou": 0.8, "normalized_hausdorff_distance": 0.6, "combined_score": 0.7},
            },
        ),
    )
    return Demo(root, dpath, ppath, qpath, spath, scpath)


@pytest.fixture(scope="session")
def g() -> SimpleNamespace:
    """The demo's constants (dataset name, geometries, object placement) for assertions."""
    return SimpleNamespace(
        DATASET=DATASET,
        EM_S0=EM_S0,
        EM_S1=EM_S1,
        TRAIN_MITO=TRAIN_MITO,
        TRAIN_ECS=TRAIN_ECS,
        TEST_GEOM=TEST_GEOM,
        MITO_CENTRE=MITO_CENTRE,
        MITO_RADIUS=MITO_RADIUS,
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("viewer-demo"))
