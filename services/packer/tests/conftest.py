"""Fixtures for packer tests: tiny processed volumes and test crop manifests built in tmp_path."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from csc_common.classes import class_kind
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.geometry import Geometry
from csc_common.manifest import new_manifest, now, write_manifest
from csc_common.volumes import create_array, multiscale_attrs, open_group

Vol = tuple[int, str, np.ndarray, Geometry]  # crop id, class, data, geometry


def write_processed(root: Path, volumes: list[Vol], dataset: str = "ds", *, layout: str = "ome") -> Path:
    """processed.zarr + processed.json in the postprocessor's layout (``ome``: class path ``crop<N>/<class>/s0``
    inside an OME-NGFF group), or with the path naming that group (``group``), or as plain arrays (``flat``)."""
    root.mkdir(parents=True, exist_ok=True)
    grp = open_group(root / "processed.zarr", mode="w")
    crops: dict[int, dict] = {}
    for crop_id, name, data, geom in volumes:
        attrs = {"voxel_size": list(geom.voxel_size), "translation": list(geom.translation)}
        if layout == "flat":
            parent, array_name, path = grp.require_group(f"crop{crop_id}"), name, f"crop{crop_id}/{name}"
        else:
            parent, array_name = grp.require_group(f"crop{crop_id}/{name}"), "s0"
            parent.attrs.update(multiscale_attrs([("s0", geom)], name=name))
            path = f"crop{crop_id}/{name}" + ("/s0" if layout == "ome" else "")
        arr = create_array(parent, array_name, shape=data.shape, dtype=data.dtype, attrs=attrs)
        arr[...] = data
        crops.setdefault(crop_id, {"id": crop_id, "dataset": dataset, "classes": []})["classes"].append(
            {"name": name, "kind": class_kind(name), "path": path, "geometry": geom.to_json(), "dtype": data.dtype.name}
        )
    out = root / "processed.json"
    write_manifest(
        out, new_manifest("processed", "postprocessor", now(), zarr="processed.zarr", crops=list(crops.values()))
    )
    return out


def write_test_manifest(path: Path, rows: list[tuple[int, str, Geometry]], dataset: str = "ds") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(write_crop_manifest([CropRow(c, dataset, n, g) for c, n, g in rows]))
    return path


@pytest.fixture
def make_processed(tmp_path: Path) -> Callable[..., Path]:
    return lambda volumes, **kw: write_processed(tmp_path / "data", volumes, **kw)


@pytest.fixture
def make_test_manifest(tmp_path: Path) -> Callable[[list[tuple[int, str, Geometry]]], Path]:
    return lambda rows: write_test_manifest(tmp_path / "data" / "test_crop_manifest.csv", rows)
