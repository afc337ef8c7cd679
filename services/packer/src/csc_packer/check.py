"""``csc-pack --check``: say exactly what the evaluator would reject, score as missing, or silently degrade.

Works on any submission zip, hand-made ones too, without extracting it: the
member list and the small JSON metadata files are read straight from the zip.
Checks, in the evaluator's order (UPSTREAM.md §9.1, §8.3):

* zip safety, the evaluator's own rules (``csc_common.submission.zipsafety``): member
  count, total uncompressed size (``MAX_UNCOMPRESSED_SIZE``, 50 GiB), per-member
  compression ratio, no symlinks or special files, no absolute, ``..`` or
  NUL/backslash names, nothing resolving to the extraction folder itself, no
  duplicates, no encryption — any of these rejects the whole zip, and every
  one found is reported;
* zarr layout: zip root = zarr root, or exactly one nested ``*.zarr`` folder
  (hoisted, warned); more than one is rejected; crop groups ``crop<N>``
  (bare ``<N>`` accepted with a warning, as the evaluator renames them);
* per (crop, class) row of the test manifest: present (else *missing*), a
  readable Zarr-2 array or multiscale group, 3D, numeric dtype, known codec,
  ``voxel_size``/``translation`` attrs, and the placement the evaluator will
  compute: the resampling size guard (``MAX_VOLUME_SIZE_RATIO``), and whether
  the array covers exactly the test crop (same voxel size: shape and snapped
  offset must match; other voxel sizes are resampled, warned, and must cover
  the crop).

Stricter than the evaluator on purpose: an array it would silently crop or
pad is an error here, because that costs score without any message.
"""

import json
import posixpath
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numcodecs
import numpy as np
from csc_common.crops import CropRow
from csc_common.errors import CscError, InputError, SubmissionError
from csc_common.geometry import int3, snap_offset
from csc_common.submission.align import SourceGrid, check_size_ratio, choose_non_ome_level
from csc_common.submission.zipsafety import ZipLimits, zip_problems
from csc_common.volumes import choose_level, parse_multiscales

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


def _safety(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits, report: CheckReport) -> bool:
    """Report every zip-safety problem as an error; True when there is none."""
    problems = zip_problems(infos, limits)
    for p in problems:
        report.add("error", p.where, f"{p.message}; the evaluator rejects the whole zip")
    return not problems


def _json(zf: zipfile.ZipFile, name: str) -> Any:
    return json.loads(zf.read(name).decode())


@dataclass(frozen=True)
class _ArrayMeta:
    path: str
    shape: tuple[int, ...]
    attrs: dict[str, Any]


def _read_array_meta(zf: zipfile.ZipFile, files: set[str], path: str) -> _ArrayMeta:
    meta = _json(zf, f"{path}/.zarray")
    if meta.get("zarr_format") != 2:
        raise ValueError(f"zarr_format is {meta.get('zarr_format')!r}, expected 2")
    shape = tuple(int(s) for s in meta["shape"])
    dtype = np.dtype(meta["dtype"])
    if dtype.kind not in "biuf":
        raise ValueError(f"dtype {dtype} is not numeric")
    for codec in [meta.get("compressor")] + list(meta.get("filters") or []):
        if codec is not None:
            numcodecs.get_codec(dict(codec))
    attrs = _json(zf, f"{path}/.zattrs") if f"{path}/.zattrs" in files else {}
    return _ArrayMeta(path, shape, attrs)


def _resolve_node(zf: zipfile.ZipFile, files: set[str], base: str, row: CropRow) -> tuple[_ArrayMeta, SourceGrid]:
    """The array the evaluator would read for ``row`` at ``base`` (array, OME group or plain group)."""
    if f"{base}/.zarray" in files:
        arr = _read_array_meta(zf, files, base)
        return arr, SourceGrid.from_attrs(arr.attrs, base)
    attrs = _json(zf, f"{base}/.zattrs") if f"{base}/.zattrs" in files else {}
    children = sorted(
        {
            n[len(base) + 1 :].split("/")[0]
            for n in files
            if n.startswith(base + "/") and n.endswith("/.zarray") and n.count("/") == base.count("/") + 2
        }
    )
    if not children:
        raise ValueError("neither a zarr array (.zarray) nor a group holding arrays")
    metas = {c: _read_array_meta(zf, files, f"{base}/{c}") for c in children}
    if "multiscales" in attrs:
        levels = parse_multiscales(attrs, {c: m.shape for c, m in metas.items()}, base)
        level = choose_level(levels, row.geometry.voxel_size)
        return metas[level.path], SourceGrid.of(level.geometry)
    grids = {c: SourceGrid.from_attrs(m.attrs, m.path) for c, m in metas.items()}
    key = choose_non_ome_level([(c, g.voxel_size) for c, g in grids.items()], row.geometry.voxel_size)
    return metas[key], grids[key]


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


def _zarr_prefix(files: set[str], report: CheckReport) -> str | None:
    dirs = {posixpath.dirname(f) for f in files}
    all_dirs = set()
    for d in dirs:
        while d:
            all_dirs.add(d)
            d = posixpath.dirname(d)
    nested = sorted(
        d for d in all_dirs if d.endswith(".zarr") and not any(p.endswith(".zarr") for p in Path(d).parent.parts)
    )
    if len(nested) > 1:
        report.add(
            "error",
            "zip",
            f"{len(nested)} nested .zarr folders ({', '.join(nested[:3])}...); the evaluator accepts at most one",
        )
        return None
    if nested:
        report.add(
            "warning",
            "zip",
            f"zarr root is the nested folder {nested[0]}; the evaluator hoists it "
            "(csc-pack puts the zarr root at the zip root)",
        )
        return nested[0] + "/"
    if ".zgroup" not in files:
        report.add("warning", "zip", "no .zgroup at the zip root; the evaluator adds one")
    return ""


def check_zip(path: str | Path, rows: Sequence[CropRow], *, limits: ZipLimits | None = None) -> CheckReport:
    """Check a submission zip against test-manifest rows; never raises for a bad zip, it reports.

    ``limits`` default to ``ZipLimits.from_env()``, the limits the evaluator would apply in this
    environment (a malformed limit variable raises ``InputError``, as it does in the evaluator).
    """
    limits = ZipLimits.from_env() if limits is None else limits
    p = Path(path)
    report = CheckReport(str(p), len(rows))
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as exc:
        report.add("error", "zip", f"not a readable zip file ({exc})")
        return report
    with zf:
        infos = zf.infolist()
        if not _safety(infos, limits, report):
            return report
        files = {i.filename for i in infos if not i.is_dir()}
        prefix = _zarr_prefix(files, report)
        if prefix is None:
            return report
        top = {f[len(prefix) :].split("/")[0] for f in files if f.startswith(prefix) and "/" in f[len(prefix) :]}
        crop_names = {r.crop_id: f"crop{r.crop_id}" for r in rows}
        if not top & set(crop_names.values()) and top & {str(c) for c in crop_names}:
            report.add(
                "warning",
                "zip",
                "crop groups are named <N> without the 'crop' prefix; the evaluator renames them to crop<N>",
            )
            crop_names = {c: str(c) for c in crop_names}
        used: set[str] = set()
        for row in rows:
            where = f"crop{row.crop_id}/{row.class_label}"
            base = f"{prefix}{crop_names[row.crop_id]}/{row.class_label}"
            if not any(f.startswith(base + "/") for f in files):
                gone = (
                    ("crop group " + crop_names[row.crop_id] + " absent")
                    if crop_names[row.crop_id] not in top
                    else f"class {row.class_label} absent from {crop_names[row.crop_id]}"
                )
                report.add("missing", where, f"{gone}; scored as missing (worse than an empty prediction)")
                continue
            used.add(base)
            try:
                meta, grid = _resolve_node(zf, files, base, row)
            except (ValueError, TypeError, KeyError, CscError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                report.add("error", where, f"unreadable: {exc}")
                continue
            errs, warns = placement_problems(meta.shape, grid, row)
            shape_attr = meta.attrs.get("shape")
            if shape_attr is not None and [int(v) for v in shape_attr] != list(meta.shape):
                errs.insert(0, f"attr shape {list(shape_attr)} contradicts the array shape {list(meta.shape)}")
            for e in errs:
                report.add("error", where, e)
            for w in warns:
                report.add("warning", where, w)
            if not errs:
                report.ok += 1
        arrays = {posixpath.dirname(f) for f in files if f.endswith("/.zarray") and f.startswith(prefix)}
        extra = sorted(a for a in arrays if not any(a == u or a.startswith(u + "/") for u in used))
        for a in extra:
            report.add("warning", a[len(prefix) :], "not in the test manifest; ignored by the evaluator")
    return report


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
