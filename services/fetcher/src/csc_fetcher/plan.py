"""What to fetch: crop selection, EM level choice and chunk keys per crop box (pure functions).

Nothing here does I/O. The rules follow the original fetch-data
(UPSTREAM.md §1.1, §2.3): a crop box in nm is converted into each chosen EM
level's own index space (its scale and translation), padded by the same
number of voxels at every level, clipped at the volume edge, and only the
chunk keys intersecting that region are fetched.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from csc_common.classes import TESTED_CLASSES
from csc_common.cli import parse_crop_ids
from csc_common.crops import CropRow
from csc_common.env import env_number
from csc_common.errors import InputError
from csc_common.geometry import Box, Geometry, Vec3, vec3
from csc_common.volumes import Level

FETCH_MANIFEST_HEADER = ("crop_number", "collection", "alignment", "crop_url", "em_url")
EM_PATH = "recon-1/em/fibsem-uint8"
GT_PATH = "recon-1/labels/groundtruth"
EXTRA_CLASSES = ("all",)  # the combined label array every real crop carries
CROP_MODES = ("all", "test", "train")


@dataclass(frozen=True)
class TrainCrop:
    """One row of the challenge's manifest.csv: where a training crop's labels and EM live."""

    crop_id: int
    dataset: str
    alignment: str
    crop_url: str
    em_url: str


@dataclass(frozen=True)
class ArrayMeta:
    """The parts of a ``.zarray`` that decide chunk keys."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    separator: str
    fill_value: Any

    @classmethod
    def from_zarray(cls, doc: dict[str, Any], where: str) -> "ArrayMeta":
        try:
            shape, chunks = tuple(int(v) for v in doc["shape"]), tuple(int(v) for v in doc["chunks"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: .zarray lacks integer 'shape'/'chunks'") from None
        if len(shape) != len(chunks) or len(shape) < 3 or any(c <= 0 for c in chunks):
            raise InputError(f"{where}: .zarray shape {list(shape)} / chunks {list(chunks)} do not fit together")
        return cls(shape, chunks, str(doc.get("dimension_separator") or "."), doc.get("fill_value"))


def parse_fetch_manifest(text: str, source: str) -> list[TrainCrop]:
    """Parse manifest.csv (plain comma split, as the original does); errors name the line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or tuple(h.strip() for h in lines[0].split(",")) != FETCH_MANIFEST_HEADER:
        got = lines[0] if lines else "an empty file"
        raise InputError(f"{source}: header must be {','.join(FETCH_MANIFEST_HEADER)}, got {got!r}")
    out = []
    for n, line in enumerate(lines[1:], start=2):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            raise InputError(f"{source} line {n}: expected 5 comma-separated fields, got {len(parts)}")
        try:
            cid = int(parts[0])
        except ValueError:
            raise InputError(f"{source} line {n}: crop_number must be an integer, got {parts[0]!r}") from None
        if not parts[3].startswith("s3://") or not parts[4].startswith("s3://"):
            raise InputError(f"{source} line {n}: crop_url and em_url must be s3:// URLs")
        zarr = f"{parts[1]}/{parts[1]}.zarr/"
        key = parts[3][5:].partition("/")[2]
        if not key.startswith(zarr) or not key[len(zarr) :].strip("/"):
            raise InputError(
                f"{source} line {n}: crop_url {parts[3]!r} is not inside the collection's zarr; "
                f"expected s3://<bucket>/{zarr}<label path>/crop{cid}"
            )
        out.append(TrainCrop(cid, parts[1], parts[2], parts[3], parts[4]))
    return out


def parse_crops(text: str) -> str | list[int]:
    """``--crops``: ``"all"``, ``"test"`` or ``"train"`` (lower-cased), else the crop ids it lists."""
    mode = text.strip().lower()
    if mode in CROP_MODES:
        return mode
    try:
        return parse_crop_ids(text, "--crops")
    except InputError:
        raise InputError(
            f"--crops: expected 'all', 'test', 'train' or comma-separated crop ids, got {text!r}"
        ) from None


def check_class_names(names: Sequence[str], test_rows: Sequence[CropRow], flag: str) -> None:
    """Class names of a flag must be the challenge's (or the test manifest's): a typo is bad input."""
    known = set(TESTED_CLASSES) | set(EXTRA_CLASSES) | {r.class_label for r in test_rows}
    bad = [c for c in names if c not in known]
    if bad:
        raise InputError(
            f"{flag}: unknown class(es) {', '.join(bad)}; expected names from tested_classes.csv, e.g. mito, nuc, er"
        )


@dataclass(frozen=True)
class Selection:
    train: list[TrainCrop]
    test: dict[int, list[CropRow]]  # crop id -> its test-manifest rows
    classes: list[str] | None  # None = every class


def select(
    train: Sequence[TrainCrop],
    test_rows: Sequence[CropRow],
    *,
    crops: str = "all",
    datasets: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> Selection:
    """Which crops to fetch: ``crops`` is ``all``, ``test``, ``train`` or a comma list of ids.

    Unknown crop ids, datasets or class names are input errors (exit 2), so a
    typo never turns into a silent empty download.
    """
    if classes is not None:
        check_class_names(classes, test_rows, "--classes")
    all_ds = {t.dataset for t in train} | {r.dataset for r in test_rows}
    if datasets is not None:
        bad = [d for d in datasets if d not in all_ds]
        if bad:
            raise InputError(f"unknown dataset(s) {', '.join(bad)}; the manifests list {', '.join(sorted(all_ds))}")
    test_by_id: dict[int, list[CropRow]] = {}
    for r in test_rows:
        test_by_id.setdefault(r.crop_id, []).append(r)
    chosen = parse_crops(crops)
    if chosen == "all":
        tr, te = list(train), dict(test_by_id)
    elif chosen == "test":
        tr, te = [], dict(test_by_id)
    elif chosen == "train":
        tr, te = list(train), {}
    else:
        ids = list(chosen)
        by_id = {t.crop_id: t for t in train}
        unknown = [i for i in ids if i not in by_id and i not in test_by_id]
        if unknown:
            raise InputError(
                f"unknown crop id(s) {', '.join(map(str, unknown))}: in neither the training manifest nor the test crop manifest"
            )
        tr = [by_id[i] for i in ids if i in by_id]
        te = {i: test_by_id[i] for i in ids if i in test_by_id}
    if datasets is not None:
        tr = [t for t in tr if t.dataset in datasets]
        te = {i: rows for i, rows in te.items() if rows[0].dataset in datasets}
    if classes is not None:
        te = {i: [r for r in rows if r.class_label in classes] for i, rows in te.items()}
        te = {i: rows for i, rows in te.items() if rows}
    return Selection(tr, te, list(classes) if classes is not None else None)


def select_levels(
    levels: Sequence[Level],
    label_voxel_size: Sequence[float],
    *,
    all_resolutions: bool = False,
    resolutions: Sequence[float] | None = None,
) -> list[Level]:
    """The EM levels to fetch for a crop annotated at ``label_voxel_size``.

    Default (the original's rule): every level whose voxel size is > 0.8 x the
    label voxel size on every axis, i.e. finer levels are skipped and all
    coarser ones kept. ``all_resolutions`` keeps every level; ``resolutions``
    (nm) keeps, per value, the level closest to it. Levels with a spatial axis
    of length <= 1 are never fetched.
    """
    usable = [lv for lv in levels if all(s > 1 for s in lv.geometry.shape)]
    if resolutions:
        chosen: dict[str, Level] = {}
        for r in resolutions:
            best = min(usable, key=lambda lv: sum(abs(v - r) / r for v in lv.geometry.voxel_size), default=None)
            if best is not None:
                chosen[best.path] = best
        return [lv for lv in usable if lv.path in chosen]
    if all_resolutions:
        return list(usable)
    return [
        lv for lv in usable if all(v > 0.8 * t for v, t in zip(lv.geometry.voxel_size, label_voxel_size, strict=False))
    ]


def chunk_ranges(geometry: Geometry, meta: ArrayMeta, box: Box, padding: int = 0) -> tuple[range, range, range] | None:
    """Chunk index ranges of the level ``geometry`` that intersect ``box`` grown by ``padding`` voxels.

    The voxel region is the outward-rounded box in the level's own index
    space, padded by ``padding`` voxels per side, clipped to the array. None
    where nothing of the array is touched.
    """
    sl = geometry.slices_for(box, clip=False)
    shape = meta.shape[-3:]
    chunks = meta.chunks[-3:]
    out = []
    for s, n, c in zip(sl, shape, chunks, strict=False):
        lo, hi = max(s.start - padding, 0), min(s.stop + padding, n)
        if hi <= lo:
            return None
        out.append(range(lo // c, math.ceil(hi / c)))
    return out[0], out[1], out[2]


def chunk_key(level_key: str, index: Iterable[int], meta: ArrayMeta) -> str:
    """Bucket key of one chunk; leading (channel) axes get chunk index 0."""
    lead = [0] * (len(meta.shape) - 3)
    return f"{level_key}/" + meta.separator.join(str(i) for i in [*lead, *index])


def row_prefix(level_key: str, zy: tuple[int, int], meta: ArrayMeta) -> str:
    """The key prefix shared by every chunk of one (z, y) row of chunks: one listing per row."""
    lead = [0] * (len(meta.shape) - 3)
    return f"{level_key}/" + meta.separator.join(str(i) for i in [*lead, *zy]) + meta.separator


def finest_voxel_size(sizes: Iterable[Sequence[float]]) -> Vec3:
    """The smallest voxel size per axis."""
    all_sizes = list(sizes)
    return vec3(min(v[i] for v in all_sizes) for i in range(3))


def default_workers(value: int | None) -> int:
    """--num-workers, else env CSC_FETCH_DATA_NUM_WORKERS, else 32 (the original's default)."""
    return value if value is not None else env_number("CSC_FETCH_DATA_NUM_WORKERS", 32, int)


def effective_batch(batch_size: int, n_objects: int, workers: int) -> int:
    """Keys per copy task: at most ``batch_size``, but small enough to keep every worker busy."""
    return max(1, min(batch_size, math.ceil(n_objects / (workers * 4)) if n_objects else 1))
