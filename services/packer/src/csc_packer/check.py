"""``csc-pack --check``: say exactly what the evaluator would reject, score as missing, or silently degrade.

Works on any submission the evaluator takes (a zip, hand-made ones too, a
folder holding one, a zarr folder) without extracting it, through the
evaluator's own reader (``csc_common.submission.reader``): every read the
evaluator will run is run here the same way, so whatever would make it fail
fails here, with the same message. In the evaluator's order (UPSTREAM.md §9.1, §8.3):

* zip safety, the evaluator's own rules (``csc_common.submission.zipsafety``): member
  count, total uncompressed size (``MAX_UNCOMPRESSED_SIZE``, 50 GiB), per-member
  compression ratio, no symlinks or special files, no absolute, ``..`` or
  NUL/backslash names, nothing resolving to the extraction folder itself, no
  duplicates, no file that is also a folder, no encryption; then one zarr root,
  small metadata and stray files, every chunk member no larger than its
  array's chunk, sane ``.zarray`` chunks, and a total no larger than the rows
  can need — any of these rejects the whole zip, and every one found is reported;
* zarr layout: zip root = zarr root, or exactly one nested ``*.zarr`` folder
  (hoisted, warned); crop groups ``crop<N>`` (bare ``<N>`` accepted with a
  warning, as the evaluator renames them); no crop of the rows at all (a wrong
  root, a zip inside the zip) is an error, as in the evaluator;
* per (crop, class) row of the test manifest: present (else *missing*), a
  readable Zarr-2 array or multiscale group, 3D, numeric dtype, known codec,
  ``voxel_size``/``translation`` attrs, and the placement the evaluator will
  compute: the resampling size guard (``MAX_VOLUME_SIZE_RATIO``), and whether
  the array covers exactly the test crop (same voxel size: shape and snapped
  offset must match; other voxel sizes are resampled, warned, and must cover
  the crop); then every chunk of it read and decoded (CRC, codec, chunk size,
  NaN/Inf in a float array), one slab of chunks at a time.

Stricter than the evaluator on purpose: an array it would silently crop or
pad is an error here, because that costs score without any message.
"""

import posixpath
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from csc_common.crops import CropRow
from csc_common.errors import CscError, InputError, SubmissionError
from csc_common.geometry import int3, snap_offset
from csc_common.submission.align import SourceGrid, check_size_ratio
from csc_common.submission.reader import Submission, index_submission
from csc_common.submission.zipsafety import ZipLimits

from csc_packer.config import Config
from csc_packer.testmanifest import load_test_manifest

Level = Literal["error", "missing", "warning"]


@dataclass(frozen=True)
class Finding:
    level: Level
    where: str
    message: str

    def line(self) -> str:
        return f"{self.level.upper():<7} {self.where}: {self.message}"


@dataclass
class CheckReport:
    """What --check found; ``ok`` counts rows that will be scored as submitted."""

    zip: str
    rows: int
    ok: int = 0
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, where: str, message: str) -> None:
        self.findings.append(Finding(level, where, message))

    def of(self, level: Level) -> list[Finding]:
        return [f for f in self.findings if f.level == level]

    @property
    def errors(self) -> list[Finding]:
        return self.of("error")

    @property
    def missing(self) -> list[Finding]:
        return self.of("missing")

    @property
    def warnings(self) -> list[Finding]:
        return self.of("warning")

    def passed(self, *, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.missing)

    def summary(self) -> str:
        return (
            f"{self.zip}: {self.rows} rows: {self.ok} ok, {len(self.missing)} missing, "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        )


def _fmt(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


def placement_problems(shape: tuple[int, ...], grid: SourceGrid, row: CropRow) -> tuple[list[str], list[str]]:
    """(errors, warnings) for where the evaluator would put an array of ``shape`` on ``grid`` for ``row``."""
    errors: list[str] = []
    warnings: list[str] = []
    target = row.geometry
    if len(shape) != 3:
        return [f"expected a 3D array (z, y, x), got shape {shape}"], []
    try:
        check_size_ratio(shape, target.shape, where="array")
    except CscError as exc:
        return [str(exc).removeprefix("array: ")], []
    if grid.voxel_size is None:
        if shape == target.shape:
            warnings.append("no voxel_size/resolution/scale attr: matched to the test crop by shape only")
        else:
            errors.append(
                f"no voxel_size attr and shape {shape} does not match the test manifest {target.shape}: "
                "the evaluator would centre-pad/crop it"
            )
        return errors, warnings
    same_vs = target.same_voxel_size(grid.voxel_size)
    if same_vs:
        placed = shape
    else:
        factors = np.asarray(grid.voxel_size) / np.asarray(target.voxel_size)
        placed = int3(np.round(np.asarray(shape) * factors))
        warnings.append(
            f"voxel size {_fmt(grid.voxel_size)} nm is resampled to the test crop's {_fmt(target.voxel_size)} nm"
        )
    if grid.translation is None:
        offset = (0, 0, 0)
        if any(target.translation):
            errors.append(
                f"no translation/offset attr: the evaluator assumes 0, but the test crop starts at "
                f"{_fmt(target.translation)} nm"
            )
            return errors, warnings
    else:
        offset = snap_offset(grid.translation, target)
    if same_vs and (offset != (0, 0, 0) or placed != target.shape):
        errors.append(
            f"shape {shape} at translation {_fmt(grid.translation or (0, 0, 0))} does not match the test "
            f"manifest (shape {target.shape} at {_fmt(target.translation)}; offset {offset} voxels): "
            "the evaluator would crop/pad it"
        )
    elif not same_vs:
        covers = all(o <= 0 and o + n >= t for o, n, t in zip(offset, placed, target.shape, strict=True))
        if not covers:
            errors.append(
                f"after resampling ({placed} voxels at offset {offset}) it does not cover the test crop "
                f"{target.shape}: the uncovered part is scored as background"
            )
    return errors, warnings


def _bare(exc: CscError, source: Path) -> str:
    """The reader's message without the leading ``<zip>: `` (each finding names its zip in the summary)."""
    return str(exc).removeprefix(f"{source}: ")


def check_zip(
    path: str | Path, rows: Sequence[CropRow], *, limits: ZipLimits | None = None, read_chunks: bool = True
) -> CheckReport:
    """Check a submission against test-manifest rows; never raises for a bad submission, it reports.

    Reads what the evaluator reads, through the same reader (``csc_common.submission.reader``):
    the member list and metadata, then for each row its array and (``read_chunks``) every chunk of it,
    decoded, CRC-checked and checked for NaN/Inf, one slab of chunks at a time.
    ``limits`` default to ``ZipLimits.from_env()``, the limits the evaluator would apply in this
    environment (a malformed limit variable raises ``InputError``, as it does in the evaluator).
    """
    limits = ZipLimits.from_env() if limits is None else limits
    p = Path(path)
    report = CheckReport(str(p), len(rows))
    try:
        sub = index_submission(p)
    except SubmissionError as exc:
        report.add("error", "zip", _bare(exc, p))
        return report
    with sub:
        problems = list(sub.problems(limits, rows))
        for problem in problems:
            report.add("error", problem.where, f"{problem.message}; the evaluator rejects the whole zip")
        if problems:
            return report
        _check_rows(sub, rows, report, read_chunks=read_chunks)
    return report


def _check_rows(sub: Submission, rows: Sequence[CropRow], report: CheckReport, *, read_chunks: bool) -> None:
    if sub.root:
        report.add(
            "warning",
            "zip",
            f"zarr root is the nested folder {sub.root.rstrip('/')}; the evaluator hoists it "
            "(csc-pack puts the zarr root at the zip root)",
        )
    elif ".zgroup" not in sub.sizes:
        report.add("warning", "zip", "no .zgroup at the zip root; the evaluator adds one")
    try:
        crops = sub.match_crops(list(dict.fromkeys(f"crop{r.crop_id}" for r in rows)))
    except SubmissionError as exc:
        report.add("error", "zip", _bare(exc, sub.source))
        return
    prefixed = any(folder != sub.root + name for name, folder in crops.items())
    if prefixed:
        report.add(
            "warning",
            "zip",
            "crop groups are named <N> without the 'crop' prefix; the evaluator renames them to crop<N>",
        )
    used: list[str] = []
    for row in rows:
        where = f"crop{row.crop_id}/{row.class_label}"
        crop = crops.get(f"crop{row.crop_id}")
        node = sub.classes(crop).get(row.class_label) if crop is not None else None
        if node is None:
            gone = (
                f"crop group {row.crop_id if prefixed else f'crop{row.crop_id}'} absent"
                if crop is None
                else f"class {row.class_label} absent from {posixpath.basename(crop)}"
            )
            report.add("missing", where, f"{gone}; scored as missing (worse than an empty prediction)")
            continue
        used.append(node)
        try:
            arr, grid = sub.array_for(node, row.geometry)
        except CscError as exc:
            report.add("error", where, f"unreadable: {exc}")
            continue
        shape = tuple(int(s) for s in arr.shape)
        errs, warns = placement_problems(shape, grid, row)
        shape_attr = dict(arr.attrs).get("shape")
        if shape_attr is not None and [int(v) for v in shape_attr] != list(shape):
            errs.insert(0, f"attr shape {list(shape_attr)} contradicts the array shape {list(shape)}")
        if read_chunks:
            try:
                sub.verify(arr)
            except CscError as exc:
                errs.append(str(exc))
        for e in errs:
            report.add("error", where, e)
        for w in warns:
            report.add("warning", where, w)
        if not errs:
            report.ok += 1
    extra = sorted(
        a for a in sub.arrays if a.startswith(sub.root) and not any(a == u or a.startswith(u + "/") for u in used)
    )
    for a in extra:
        report.add("warning", a[len(sub.root) :], "not in the test manifest; ignored by the evaluator")


def run_check(cfg: Config) -> int:
    """``--check``: print every finding and the summary on stdout; SubmissionError (exit 2) when it fails."""
    if not Path(cfg.check).exists():
        raise InputError(f"{cfg.check}: zip file not found")
    test = load_test_manifest(cfg.test_manifest)
    report = check_zip(cfg.check, test.rows)
    for f in report.findings:
        print(f.line())
    print(report.summary())
    sys.stdout.flush()
    if not report.passed(strict=cfg.strict):
        why = f"{len(report.errors)} errors" if report.errors else f"{len(report.missing)} rows missing (--strict)"
        raise SubmissionError(f"{cfg.check}: check failed: {why}")
    return 0
