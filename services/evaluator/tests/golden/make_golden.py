"""Regenerate the golden case (inputs + expected outputs). Run only when the format changes on purpose:

    .venv/bin/python services/evaluator/tests/golden/make_golden.py

The case covers: anisotropic voxels and translations that are not multiples of the voxel size, a
truth mask, a class and a crop left out of the submission, an OME-NGFF class group at a finer voxel
size (resampled), an instance class with a false positive, a split object and a shifted object.
Expected outputs are written by the evaluator itself with both --rules values; the hand-computed
rules are pinned by test_scoring/test_aggregate/test_cli, these files pin the on-disk formats.
"""

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
from csc_common import volumes
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.geometry import Geometry

HERE = Path(__file__).resolve().parent / "case1"


def _array(group, name, data, geom, extra=None):
    attrs = {"voxel_size": list(geom.voxel_size), "translation": list(geom.translation), **(extra or {})}
    arr = volumes.create_array(group, name, shape=data.shape, dtype=data.dtype, attrs=attrs)
    arr[...] = data


def build(root: Path) -> None:
    rng = np.random.default_rng(7)
    g11 = Geometry((2.5, 2.0, 2.0), (101.3, 50.0, 37.7), (12, 14, 16))
    g12 = Geometry((8.0, 8.0, 8.0), (64.0, 64.0, 64.0), (8, 8, 8))
    g13 = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (6, 6, 6))
    ecs11 = (rng.random(g11.shape) < 0.4).astype(np.uint8)
    ecs11_mask = np.ones(g11.shape, np.uint8)
    ecs11_mask[:, :, :3] = 0
    mito11 = np.zeros(g11.shape, np.uint16)
    mito11[1:4, 1:5, 1:5] = 1
    mito11[6:10, 2:6, 8:14] = 2
    mito11[2:5, 9:13, 2:6] = 3
    nuc11 = np.zeros(g11.shape, np.uint8)
    nuc11[3:9, 3:11, 3:13] = 1
    er12 = np.zeros(g12.shape, np.uint8)
    er12[2:6, 1:7, 2:5] = 1
    ves12 = np.zeros(g12.shape, np.uint32)
    ves12[1:3, 1:3, 1:3] = 1
    ves12[5:7, 5:7, 1:4] = 2
    ecs13 = np.zeros(g13.shape, np.uint8)
    ecs13[:3] = 1
    mito13 = np.zeros(g13.shape, np.uint8)
    mito13[1:3, 1:3, 1:3] = 1

    truth = volumes.open_group(root / "truth.zarr", "w")
    c = truth.require_group("crop11")
    _array(c, "ecs", ecs11, g11)
    _array(c, "ecs_mask", ecs11_mask, g11)
    _array(c, "mito", mito11, g11)
    _array(c, "nuc", nuc11, g11)
    c = truth.require_group("crop12")
    _array(c, "er", er12, g12)
    _array(c, "ves", ves12, g12)
    c = truth.require_group("crop13")
    _array(c, "ecs", ecs13, g13)
    _array(c, "mito", mito13, g13)
    rows = [CropRow(11, "ds_a", n, g11) for n in ("ecs", "mito", "nuc")]
    rows += [CropRow(12, "ds_b", n, g12) for n in ("er", "ves")]
    rows += [CropRow(13, "ds_b", n, g13) for n in ("ecs", "mito")]
    rows += [CropRow(14, "ds_b", "cyto", g13)]  # a row without truth: counted in total_evals only
    (root / "test_crop_manifest.csv").write_text(write_crop_manifest(rows))

    tmp = root / "_sub.zarr"
    sub = volumes.open_group(tmp, "w")
    c = sub.require_group("crop11")
    ecs_pred = ecs11.copy()
    ecs_pred[:, :2] = 1 - ecs_pred[:, :2]
    _array(c, "ecs", ecs_pred, g11, {"shape": list(g11.shape)})
    mito_pred = np.zeros(g11.shape, np.uint16)
    mito_pred[1:4, 1:5, 1:5] = 5  # exact
    mito_pred[7:11, 2:6, 8:14] = 9  # shifted one voxel in z
    mito_pred[2:5, 9:13, 2:3] = 4  # object 3 split by a gap at x=3
    mito_pred[2:5, 9:13, 4:6] = 4
    mito_pred[10, 12, 14] = 2  # a false positive speck
    _array(c, "mito", mito_pred, g11, {"shape": list(g11.shape)})
    c = sub.require_group("crop12")
    fine = np.repeat(np.repeat(np.repeat(er12, 2, 0), 2, 1), 2, 2)
    fine[0:4, 0:4, 0:4] = 1
    volumes.write_multiscale(c, "er", [(fine, Geometry((4.0,) * 3, g12.translation, fine.shape))])
    ves_pred = ves12.copy()
    ves_pred[3, 3, 6] = 7
    _array(c, "ves", ves_pred, g12)
    with zipfile.ZipFile(root / "submission.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tmp).as_posix())
    shutil.rmtree(tmp)


def expected(root: Path) -> None:
    from csc_evaluator.cli import main

    for rules in ("challenge", "documented", "official"):
        out = root / f"expected_{rules}"
        shutil.rmtree(out, ignore_errors=True)
        rc = main(
            [
                str(root / "submission.zip"),
                "--truth",
                str(root / "truth.zarr"),
                "--output",
                str(out / "result.json"),
                "--rules",
                rules,
                "--workers",
                "1",
                "-q",
            ]
        )
        assert rc == 0, rc
        (out / "scores.json").unlink()  # has timestamps; the two result files are the pinned format
        for f in out.glob("*.json"):
            json.loads(f.read_text())


if __name__ == "__main__":
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    build(HERE)
    expected(HERE)
    sys.exit(0)
