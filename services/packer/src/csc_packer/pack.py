"""The packer stage: processed.json + test crop manifest -> submission.zip + submission.json.

For every (crop, class) row of the test crop manifest, the processed volume
of that crop and class is put on the row's grid by the challenge's own rule
(`csc_common.submission.align`, UPSTREAM.md §8.3: nearest for instance classes, linear
then > 0.5 for semantic ones, translation snapped) and written as the Zarr-2
array ``crop<N>/<class>`` with ``voxel_size``, ``translation`` and ``shape``
attrs; masks are uint8 0/1 and instance ids stay uint32/uint64. The zarr is
zipped with its root at the zip root, the zip is checked with `check_zip`
(so what we hand over is what ``--check`` accepts), and the ``submission``
manifest (zip sha256, rows, packed, missing) is written last. Rows with no
processed volume are reported as missing (an error with ``--strict``).
"""

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from csc_common.classes import class_kind
from csc_common.errors import StageFailed, SubmissionError
from csc_common.log import progress
from csc_common.manifest import Manifest, artifact, new_manifest, now, relpath, write_manifest
from csc_common.submission.align import read_aligned
from csc_common.volumes import open_group

from csc_packer.check import check_zip
from csc_packer.config import Config
from csc_packer.testmanifest import LoadedTestManifest
from csc_packer.writers import write_class_array, zip_submission

log = logging.getLogger("csc.pack")


def processed_index(manifest: Manifest) -> dict[tuple[int, str], dict[str, Any]]:
    """(crop id, class) -> class entry of the processed manifest."""
    out = {}
    for crop in manifest["crops"]:
        for cls in crop["classes"]:
            out[(int(crop["id"]), cls["name"])] = cls
    return out


def run(cfg: Config, manifest: Manifest, test: LoadedTestManifest) -> Manifest:
    """Pack, self-check and record a submission; returns the submission manifest."""
    started = now()
    t0 = time.perf_counter()
    out_manifest = Path(cfg.output)
    zip_path = out_manifest.with_suffix(".zip")
    index = processed_index(manifest)
    zroot = manifest.resolve(manifest["zarr"])
    rows = test.rows
    missing = [r for r in rows if (r.crop_id, r.class_label) not in index]
    if missing:
        listed = ", ".join(f"crop{r.crop_id}/{r.class_label}" for r in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        msg = (
            f"{len(missing)} of {len(rows)} test rows have no processed volume and will be scored as missing: "
            f"{listed}{more}"
        )
        if cfg.strict:
            raise SubmissionError(msg + " (--strict)")
        log.warning(msg)
    wanted = {(r.crop_id, r.class_label) for r in rows}
    extra = sorted(k for k in index if k not in wanted)
    if extra:
        log.info(
            "%d processed volumes are not rows of the test manifest and are left out (e.g. crop%d/%s)",
            len(extra),
            *extra[0],
        )
    if len(missing) == len(rows):
        raise SubmissionError(
            f"{manifest.path}: none of the {len(rows)} test rows of {test.source} has a processed "
            "volume; nothing to pack"
        )
    open_group(zroot)
    out_manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{zip_path.name}.", dir=out_manifest.parent))
    try:
        zarr_dir = tmp / "submission.zarr"
        root = open_group(zarr_dir, mode="w")
        for crop_id in dict.fromkeys(r.crop_id for r in rows):
            root.require_group(f"crop{crop_id}")
        packed = 0
        for row in progress(rows, desc="pack", total=len(rows), unit="row"):
            entry = index.get((row.crop_id, row.class_label))
            if entry is None:
                continue
            kind = class_kind(row.class_label)
            data = read_aligned(zroot / entry["path"], row.geometry, kind=kind)  # type: ignore[arg-type]
            write_class_array(root, row.crop_id, row.class_label, data, row.geometry)
            packed += 1
        zip_submission(zarr_dir, tmp / zip_path.name)
        report = check_zip(tmp / zip_path.name, rows)
        if report.errors:
            raise StageFailed(f"packed zip fails its own check: {report.errors[0].line()}")
        shutil.move(tmp / zip_path.name, zip_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    data = new_manifest(
        "submission",
        "packer",
        started,
        inputs=[manifest.ref(out_manifest)],
        zip=artifact(zip_path, out_manifest),
        test_manifest=test.source if "://" in test.source else relpath(test.source, out_manifest),
        test_manifest_sha256=test.sha256,
        rows=len(rows),
        packed=packed,
        missing=[{"crop": r.crop_id, "class": r.class_label} for r in missing],
    )
    written = write_manifest(out_manifest, data)
    log.info(
        "packed %d of %d rows (%d crops, %d missing) -> %s (%d bytes, %.1fs)",
        packed,
        len(rows),
        len({r.crop_id for r in rows}),
        len(missing),
        zip_path,
        written["zip"]["bytes"],
        time.perf_counter() - t0,
    )
    return written
