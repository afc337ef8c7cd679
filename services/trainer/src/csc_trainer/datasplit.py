"""The training/validation split in the original's datasplit.csv format (UPSTREAM.md §5.3).

No header; one row per crop, five double-quoted fields::

    "train","<raw zarr root>","<raw array path>","<gt zarr root>","<gt crop path>/[cls1,cls2]"

Zarr roots are written relative to the CSV's folder (the original writes the
paths it globbed, usually relative too) and read back relative to it, so a
datasplit travels with the data. The bracket lists the requested classes
present in the crop.
"""

import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from csc_common.errors import InputError
from csc_common.fsutil import atomic_write_text
from csc_common.views import CropEntry, DatasetView, load

from csc_trainer.config import DatasplitConfig, ForceAll
from csc_trainer.io import crop_path_of

log = logging.getLogger("csc.train")
Side = Literal["train", "validate"]
_CROP_RE = re.compile(r"^(?P<crop>.*?)/?\[(?P<classes>[^\]]*)\]$")


@dataclass(frozen=True)
class SplitRow:
    """One crop's place in the split."""

    split: Side
    crop_id: int
    dataset: str
    classes: tuple[str, ...]


def make_split(
    crops: Sequence[CropEntry],
    classes: Sequence[str],
    *,
    validate_ratio: float,
    rng: np.random.Generator,
    force_all: ForceAll = "false",
    scale: Sequence[float] | None = None,
) -> list[SplitRow]:
    """Split training crops between train and validate, as the original does.

    A crop is kept when it annotates at least one of ``classes`` (with
    ``scale``: only classes whose s0 voxel size is <= ``scale`` on every axis
    count). Each crop goes to validation with probability ``validate_ratio``.
    ``force_all``: "true" drops crops lacking a class; "train"/"validate"
    keeps such crops out of that split. At least one crop stays in train.
    """
    rows: list[SplitRow] = []
    for crop in crops:
        if crop.split != "train" or crop.id is None:
            continue
        present = []
        for c in crop.classes:
            if c.name not in classes or not c.path:
                continue
            if scale is not None and any(v > s + 1e-9 for v, s in zip(c.geometry.voxel_size, scale, strict=True)):
                continue
            present.append(c.name)
        present = [n for n in classes if n in present]  # requested order
        if not present:
            continue
        complete = len(present) == len(classes)
        split: Side = "validate" if rng.random() < validate_ratio else "train"
        if not complete:
            if force_all == "true":
                continue
            if force_all == "train" and split == "train":
                split = "validate"
            elif force_all == "validate" and split == "validate":
                split = "train"
        rows.append(SplitRow(split, crop.id, crop.dataset, tuple(present)))
    if rows and not any(r.split == "train" for r in rows):
        first = rows[0]
        rows[0] = SplitRow("train", first.crop_id, first.dataset, first.classes)
    return rows


def _paths(ds: DatasetView) -> tuple[dict[str, tuple[Path, str]], dict[int, str]]:
    """Zarr root and EM path per dataset; label crop group per crop."""
    roots = {d.name: (d.zarr, d.em_path) for d in ds.datasets}
    crop_paths = {c.id: crop_path_of(c) for c in ds.crops if c.id is not None and any(x.path for x in c.classes)}
    return roots, crop_paths


def datasplit_csv(rows: Sequence[SplitRow], ds: DatasetView, csv_path: str | Path) -> str:
    """The CSV text for ``rows`` (paths relative to the CSV's folder)."""
    roots, crop_paths = _paths(ds)
    base = Path(csv_path).resolve().parent
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for r in rows:
        root, em_path = roots[r.dataset]
        rel = os.path.relpath(root, base)
        writer.writerow([r.split, rel, em_path, rel, f"{crop_paths[r.crop_id]}/[{','.join(r.classes)}]"])
    return buf.getvalue()


def read_datasplit(csv_path: str | Path, ds: DatasetView) -> list[SplitRow]:
    """Rows of a datasplit CSV, matched to the manifest's crops by zarr root and crop path."""
    p = Path(csv_path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"{p}: cannot read datasplit ({exc.strerror})") from None
    roots, crop_paths = _paths(ds)
    by_root = {root: name for name, (root, _) in roots.items()}
    by_crop = {(c.dataset, crop_paths.get(c.id)): c.id for c in ds.crops if c.id is not None}
    rows = []
    for n, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields:
            continue
        if len(fields) != 5 or fields[0] not in ("train", "validate"):
            raise InputError(
                f'{p}: line {n}: expected 5 fields "train|validate",raw root,raw path,gt root,crop path/[classes]'
            )
        m = _CROP_RE.match(fields[4])
        if not m:
            raise InputError(f"{p}: line {n}: crop field {fields[4]!r} lacks the /[cls1,cls2] suffix")
        root = (p.resolve().parent / fields[3]).resolve()
        dataset = by_root.get(root)
        crop_id = by_crop.get((dataset, m["crop"].rstrip("/"))) if dataset else None
        if dataset is None or crop_id is None:
            raise InputError(f"{p}: line {n}: crop {fields[3]}/{m['crop']} is not a crop of {ds.where}")
        names = tuple(s.strip() for s in m["classes"].split(",") if s.strip())
        side: Side = "train" if fields[0] == "train" else "validate"
        rows.append(SplitRow(side, crop_id, dataset, names))
    return rows


def run(cfg: DatasplitConfig) -> list[SplitRow]:
    """``csc make-datasplit``: split the dataset's training crops and write the CSV at ``cfg.csv_path``."""
    ds = load(cfg.dataset, DatasetView)
    classes = cfg.class_list
    wanted_ds, wanted_crops = set(cfg.dataset_names), set(cfg.crop_ids)
    crops = [
        c
        for c in ds.crops_of("train")
        if (not wanted_ds or c.dataset in wanted_ds) and (not wanted_crops or c.id in wanted_crops)
    ]
    rows = make_split(
        crops,
        classes,
        validate_ratio=cfg.validate_ratio,
        rng=np.random.default_rng(cfg.seed),
        force_all=cfg.force_all_classes,
        scale=cfg.scale_nm,
    )
    if not rows:
        raise InputError(
            f"{ds.where}: no training crop annotates any of {', '.join(classes)}"
            + (" at the requested --scale" if cfg.scale else "")
        )
    out = Path(cfg.csv_path)
    atomic_write_text(out, datasplit_csv(rows, ds, out))
    n_val = sum(r.split == "validate" for r in rows)
    log.info("wrote %s: %d crops (%d train, %d validate)", out, len(rows), len(rows) - n_val, n_val)
    return rows
