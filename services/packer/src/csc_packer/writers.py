"""Write submission volumes and zip them: the original's convenience writers as a small API.

``save_class_index_volume`` splits a class-index volume (0 = background,
``i + 1`` = ``class_names[i]``) into one binary array per class;
``save_volumes`` writes a list of binary masks or instance-id volumes. Both
write ``<submission>.zarr/crop<N>/<class>`` Zarr-2 arrays with the
``voxel_size``, ``translation`` and ``shape`` attributes the evaluator reads;
masks are uint8 0/1 and instance ids stay uint32/uint64 (never uint8, which
would wrap ids above 255). ``zip_submission`` zips a zarr folder with the
zarr root at the zip root, the layout the challenge expects.
"""

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.cli import parse_crop_id
from csc_common.errors import SubmissionError
from csc_common.geometry import Geometry
from csc_common.submission.align import resample_kind
from csc_common.volumes import create_array, open_group


def crop_group_name(crop: int | str) -> str:
    """``557``, ``"557"`` or ``"crop557"`` -> ``"crop557"``."""
    return f"crop{parse_crop_id(crop)}"


def submission_dtype(data: np.ndarray, class_name: str) -> np.dtype:
    """uint8 for masks, uint32/uint64 for instance ids (by the largest id).

    Which classes keep ids is the scorer's rule (`resample_kind`): it resamples
    exactly those with nearest neighbours, so only their ids survive scoring.
    """
    if data.dtype == bool or resample_kind(class_name) != "instance":
        return np.dtype(np.uint8)
    top = int(data.max()) if data.size else 0
    return np.dtype(np.uint32) if top < 2**32 else np.dtype(np.uint64)


def to_submission_values(data: np.ndarray, class_name: str, *, where: str = "") -> np.ndarray:
    """A volume as it goes into a submission: semantic -> uint8 0/1; instance -> wide unsigned ids."""
    where = where or class_name
    if data.ndim != 3:
        raise SubmissionError(f"{where}: expected a 3D volume (z, y, x), got shape {data.shape}")
    if data.dtype != bool and not np.issubdtype(data.dtype, np.integer):
        raise SubmissionError(f"{where}: dtype {data.dtype} is not a mask or ids; threshold probabilities first")
    if data.size and np.issubdtype(data.dtype, np.signedinteger) and data.min() < 0:
        raise SubmissionError(f"{where}: negative values (min {data.min()}); ids must be >= 0")
    dtype = submission_dtype(data, class_name)
    if dtype == np.uint8:
        return (data != 0).astype(np.uint8)
    return data.astype(dtype, copy=False)


def write_class_array(
    root: Any,
    crop: int | str,
    class_name: str,
    data: np.ndarray,
    geometry: Geometry,
    *,
    attrs: dict[str, Any] | None = None,
) -> Any:
    """Write one ``crop<N>/<class>`` array with voxel_size, translation and shape attrs."""
    where = f"{crop_group_name(crop)}/{class_name}"
    values = to_submission_values(np.asarray(data), class_name, where=where)
    if tuple(values.shape) != geometry.shape:
        raise SubmissionError(f"{where}: shape {values.shape} does not match its geometry {geometry.shape}")
    all_attrs = {
        "voxel_size": list(geometry.voxel_size),
        "translation": list(geometry.translation),
        "shape": list(geometry.shape),
        **(attrs or {}),
    }
    grp = root.require_group(crop_group_name(crop))
    arr = create_array(grp, class_name, shape=values.shape, dtype=values.dtype, attrs=all_attrs)
    arr[...] = values
    return arr


def _geometry_for(
    shape: Sequence[int],
    geometry: Geometry | None,
    voxel_size: Sequence[float] | None,
    translation: Sequence[float] | None,
) -> Geometry:
    if geometry is not None:
        return geometry
    if voxel_size is None:
        raise SubmissionError("give geometry= or voxel_size= (and translation=): the evaluator needs them")
    return Geometry(voxel_size, translation or (0.0, 0.0, 0.0), shape)


def save_class_index_volume(
    labels: np.ndarray,
    zarr_path: str | Path,
    crop: int | str,
    class_names: Sequence[str],
    *,
    geometry: Geometry | None = None,
    voxel_size: Sequence[float] | None = None,
    translation: Sequence[float] | None = None,
    attrs: dict[str, Any] | None = None,
) -> list[str]:
    """Split a class-index volume into one binary array per class (``labels == i + 1``).

    Returns the array paths written, ``crop<N>/<class>``.
    """
    labels = np.asarray(labels)
    geom = _geometry_for(labels.shape, geometry, voxel_size, translation)
    root = open_group(zarr_path, mode="a")
    out = []
    for i, name in enumerate(class_names):
        write_class_array(root, crop, name, labels == i + 1, geom, attrs=attrs)
        out.append(f"{crop_group_name(crop)}/{name}")
    return out


def save_volumes(
    volumes: Sequence[np.ndarray],
    zarr_path: str | Path,
    crop: int | str,
    class_names: Sequence[str],
    *,
    geometry: Geometry | None = None,
    voxel_size: Sequence[float] | None = None,
    translation: Sequence[float] | None = None,
    attrs: dict[str, Any] | None = None,
) -> list[str]:
    """Write one binary mask or instance-id volume per class name; returns the array paths written."""
    if len(volumes) != len(class_names):
        raise SubmissionError(f"{len(volumes)} volumes for {len(class_names)} class names")
    root = open_group(zarr_path, mode="a")
    out = []
    for vol, name in zip(volumes, class_names, strict=True):
        vol = np.asarray(vol)
        write_class_array(
            root, crop, name, vol, _geometry_for(vol.shape, geometry, voxel_size, translation), attrs=attrs
        )
        out.append(f"{crop_group_name(crop)}/{name}")
    return out


def zip_submission(zarr_path: str | Path, zip_path: str | Path) -> Path:
    """Zip a zarr folder with its root at the zip root (ZIP_DEFLATED), written atomically."""
    src = Path(zarr_path)
    dst = Path(zip_path)
    if not (src / ".zgroup").is_file():
        raise SubmissionError(f"{src}: not a zarr v2 group (no .zgroup)")
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
                dirnames.sort()
                for f in sorted(filenames):
                    full = Path(dirpath) / f
                    zf.write(full, full.relative_to(src).as_posix())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst
