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
import time
from pathlib import Path

from csc_common import views
from csc_common.errors import InputError, StageFailed, SubmissionError
from csc_common.fsutil import make_temp_dir
from csc_common.log import progress
from csc_common.manifest import now, relpath
from csc_common.submission.align import read_aligned, resample_kind
from csc_common.views import Artifact, Header, ProcessedView, SubmissionView
from csc_common.volumes import open_group

from csc_packer.check import check_zip
from csc_packer.config import Config
from csc_packer.testmanifest import load_test_manifest
from csc_packer.writers import write_class_array, zip_submission

log = logging.getLogger("csc.pack")


def processed_index(processed: ProcessedView) -> dict[tuple[int, str], Path]:
    """(crop id, class) -> the array (or multiscale group) of that class in the processed zarr."""
    out = {}
    for crop in processed.crops:
        if crop.id is None:
            continue  # a region of a dataset, not a test crop
        for cls in crop.classes:
            if cls.path is None:
                raise InputError(f"{processed.where}: crop {crop.id} class {cls.name} has no path")
            out[(crop.id, cls.name)] = processed.zarr / cls.path
    return out


def run(cfg: Config) -> SubmissionView:
    """Pack, self-check and record a submission; returns the submission manifest as written."""
    started = now()
    t0 = time.perf_counter()
    processed = views.load(cfg.processed, ProcessedView)
    test = load_test_manifest(cfg.test_manifest)
    out_manifest = Path(cfg.output)
    zip_path = out_manifest.with_suffix(".zip")
    index = processed_index(processed)
    zroot = processed.zarr
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
            f"{processed.where}: none of the {len(rows)} test rows of {test.source} has a processed "
            "volume; nothing to pack"
        )
    open_group(zroot)
    out_manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_manifest.parent, f".{zip_path.name}.")
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
            data = read_aligned(entry, row.geometry, kind=resample_kind(row.class_label))
            write_class_array(root, row.crop_id, row.class_label, data, row.geometry)
            packed += 1
        zip_submission(zarr_dir, tmp / zip_path.name)
        report = check_zip(tmp / zip_path.name, rows)
        if report.errors:
            raise StageFailed(f"packed zip fails its own check: {report.errors[0].line()}")
        shutil.move(tmp / zip_path.name, zip_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    view = SubmissionView(
        header=Header.new("packer", started, inputs=[processed.ref(out_manifest)]),
        zip=Artifact.of(zip_path),
        test_manifest=test.source if "://" in test.source else relpath(test.source, out_manifest),
        rows=len(rows),
        packed=packed,
        missing=tuple((r.crop_id, r.class_label) for r in missing),
        details={"test_manifest_sha256": test.sha256},
    )
    written = views.save(view, out_manifest)
    log.info(
        "packed %d of %d rows (%d crops, %d missing) -> %s (%d bytes, %.1fs)",
        packed,
        len(rows),
        len({r.crop_id for r in rows}),
        len(missing),
        zip_path,
        written.zip.bytes or 0,
        time.perf_counter() - t0,
    )
    return written
