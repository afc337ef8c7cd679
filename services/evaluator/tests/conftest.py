"""Tiny on-disk fixtures for the evaluator: truth zarr, test manifest, submissions."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from csc_common import volumes
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.geometry import Geometry


def write_truth(root: Path, arrays: dict[str, dict[str, tuple[np.ndarray, Geometry]]]) -> Path:
    """``{crop: {label: (data, geometry)}}`` -> truth zarr with voxel_size/translation attrs."""
    grp = volumes.open_group(root, "w")
    for crop, labels in arrays.items():
        cg = grp.require_group(crop)
        for label, (data, geom) in labels.items():
            arr = volumes.create_array(
                cg,
                label,
                shape=data.shape,
                dtype=data.dtype,
                attrs={"voxel_size": list(geom.voxel_size), "translation": list(geom.translation)},
            )
            arr[...] = data
    return root


def write_manifest_csv(path: Path, rows: list[tuple[int, str, Geometry]]) -> Path:
    path.write_text(write_crop_manifest([CropRow(cid, "ds", label, g) for cid, label, g in rows]))
    return path


def write_submission(root: Path, arrays: dict[str, dict[str, tuple[np.ndarray, Geometry]]]) -> Path:
    grp = volumes.open_group(root, "w")
    for crop, labels in arrays.items():
        cg = grp.require_group(crop)
        for label, (data, geom) in labels.items():
            arr = volumes.create_array(
                cg,
                label,
                shape=data.shape,
                dtype=data.dtype,
                attrs={
                    "voxel_size": list(geom.voxel_size),
                    "translation": list(geom.translation),
                    "shape": list(geom.shape),
                },
            )
            arr[...] = data
    return root


def zip_dir(src: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    return dest


class Helpers:
    """The writers above, handed to tests as the ``ev`` fixture (no test imports conftest)."""

    write_truth = staticmethod(write_truth)
    write_manifest_csv = staticmethod(write_manifest_csv)
    write_submission = staticmethod(write_submission)
    zip_dir = staticmethod(zip_dir)


@pytest.fixture
def ev():
    return Helpers


@pytest.fixture
def tiny_case(tmp_path):
    """Two crops, one semantic (ecs) and one instance (mito) class each; returns paths and arrays."""
    g1 = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (8, 8, 8))
    g2 = Geometry((2.0, 2.0, 2.0), (10.0, 10.0, 10.0), (6, 6, 6))
    ecs1 = np.zeros(g1.shape, np.uint8)
    ecs1[:4] = 1
    mito1 = np.zeros(g1.shape, np.uint8)
    mito1[1:3, 1:3, 1:3] = 1
    mito1[5:7, 5:7, 5:7] = 2
    ecs2 = np.zeros(g2.shape, np.uint8)
    ecs2[:, :3] = 1
    mito2 = np.zeros(g2.shape, np.uint8)
    mito2[2:4, 2:4, 2:4] = 1
    truth = {"crop1": {"ecs": (ecs1, g1), "mito": (mito1, g1)}, "crop2": {"ecs": (ecs2, g2), "mito": (mito2, g2)}}
    write_truth(tmp_path / "truth.zarr", truth)
    write_manifest_csv(
        tmp_path / "test_crop_manifest.csv", [(1, "ecs", g1), (1, "mito", g1), (2, "ecs", g2), (2, "mito", g2)]
    )
    return tmp_path, truth
