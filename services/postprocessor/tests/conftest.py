"""Tiny predictions fixtures in the predictor's layout; the conformance kit's OME-NGFF checker."""

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from csc_common.classes import class_kind
from csc_common.geometry import Geometry
from csc_common.manifest import new_manifest, now, write_manifest
from csc_common.volumes import create_array, multiscale_attrs, open_group

# tests import conformance_kit.ome_ngff_problems (the predictor contract's OME-NGFF 0.4 check)
KIT = Path(__file__).resolve().parents[3] / "tests" / "conformance"
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

Vol = tuple[int, str, str, np.ndarray, Geometry]  # crop id, dataset, class, probabilities, geometry


def write_predictions(root: Path, volumes: list[Vol], *, dtype: str = "uint8", scale: float = 1 / 255) -> Path:
    """predictions.zarr + predictions.json in ``root``, probabilities encoded as ``value * scale``."""
    root.mkdir(parents=True, exist_ok=True)
    grp = open_group(root / "predictions.zarr", mode="w")
    crops: dict[int, dict] = {}
    for crop_id, dataset, name, prob, geom in volumes:
        enc = np.round(prob / scale).astype(dtype) if np.dtype(dtype).kind == "u" else (prob / scale).astype(dtype)
        group = grp.require_group(f"crop{crop_id}/{name}")  # the predictor's layout: OME-NGFF group, level s0
        group.attrs.update(multiscale_attrs([("s0", geom)], name=name))
        arr = create_array(
            group,
            "s0",
            shape=prob.shape,
            dtype=dtype,
            attrs={"voxel_size": list(geom.voxel_size), "translation": list(geom.translation)},
        )
        arr[...] = enc
        crops.setdefault(crop_id, {"id": crop_id, "dataset": dataset, "classes": []})["classes"].append(
            {"name": name, "kind": class_kind(name), "path": f"crop{crop_id}/{name}/s0", "geometry": geom.to_json()}
        )
    out = root / "predictions.json"
    write_manifest(
        out,
        new_manifest(
            "predictions",
            "predictor",
            now(),
            zarr="predictions.zarr",
            encoding={"dtype": dtype, "scale": scale},
            crops=list(crops.values()),
        ),
    )
    return out


@pytest.fixture
def make_predictions(tmp_path: Path) -> Callable[..., Path]:
    def make(volumes: list[Vol], **kw: object) -> Path:
        return write_predictions(tmp_path / "data", volumes, **kw)  # type: ignore[arg-type]

    return make


def _balls(shape: tuple[int, int, int], centres: list[tuple[float, float, float]], radius: float) -> np.ndarray:
    z, y, x = np.indices(shape)
    out = np.zeros(shape, bool)
    for cz, cy, cx in centres:
        out |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    return out


@pytest.fixture
def balls() -> Callable[..., np.ndarray]:
    """``balls(shape, centres, radius)``: a bool volume with one ball per centre."""
    return _balls
