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
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from csc_common.errors import InputError
from csc_common.geometry import Geometry
from csc_common.manifest import Manifest

ForceAll = Literal["false", "true", "train", "validate"]
_CROP_RE = re.compile(r"^(?P<crop>.*?)/?\[(?P<classes>[^\]]*)\]$")


@dataclass(frozen=True)
class SplitRow:
    """One crop's place in the split."""

    split: Literal["train", "validate"]
    crop_id: int
    dataset: str
    classes: tuple[str, ...]


def make_split(
    crops: Sequence[dict[str, Any]],
    classes: Sequence[str],
    *,
    validate_ratio: float,
    rng: np.random.Generator,
    force_all: ForceAll = "false",
    scale: Sequence[float] | None = None,
) -> list[SplitRow]:
    """Split training crops (manifest dicts) between train and validate, as the original does.

    A crop is kept when it annotates at least one of ``classes`` (with
    ``scale``: only classes whose s0 voxel size is <= ``scale`` on every axis
    count). Each crop goes to validation with probability ``validate_ratio``.
    ``force_all``: "true" drops crops lacking a class; "train"/"validate"
    keeps such crops out of that split. At least one crop stays in train.
    """
    rows: list[SplitRow] = []
    for crop in crops:
        if crop.get("split", "train") != "train":
            continue
        present = []
        for c in crop["classes"]:
            if c["name"] not in classes or not c.get("path"):
                continue
            if scale is not None:
                vs = Geometry.from_json(c["geometry"]).voxel_size
                if any(v > s + 1e-9 for v, s in zip(vs, scale, strict=True)):
                    continue
            present.append(c["name"])
        present = [n for n in classes if n in present]  # requested order
        if not present:
            continue
        complete = len(present) == len(classes)
        split: Literal["train", "validate"] = "validate" if rng.random() < validate_ratio else "train"
        if not complete:
            if force_all == "true":
                continue
            if force_all == "train" and split == "train":
                split = "validate"
            elif force_all == "validate" and split == "validate":
                split = "train"
        rows.append(SplitRow(split, int(crop["id"]), crop["dataset"], tuple(present)))
    if rows and not any(r.split == "train" for r in rows):
        first = rows[0]
        rows[0] = SplitRow("train", first.crop_id, first.dataset, first.classes)
    return rows


def _paths(manifest: Manifest) -> tuple[dict[str, tuple[Path, str]], dict[int, str]]:
    roots = {d["name"]: (manifest.resolve(d["zarr"]), d["em"]["path"]) for d in manifest["datasets"]}
    crop_paths = {}
    for c in manifest["crops"]:
        paths = [x["path"] for x in c["classes"] if x.get("path")]
        if paths:
            crop_paths[int(c["id"])] = sorted({p.rstrip("/").rsplit("/", 1)[0] for p in paths})[0]
    return roots, crop_paths


def datasplit_csv(rows: Sequence[SplitRow], manifest: Manifest, csv_path: str | Path) -> str:
    """The CSV text for ``rows`` (paths relative to the CSV's folder)."""
    roots, crop_paths = _paths(manifest)
    base = Path(csv_path).resolve().parent
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for r in rows:
        root, em_path = roots[r.dataset]
        rel = os.path.relpath(root, base)
        writer.writerow([r.split, rel, em_path, rel, f"{crop_paths[r.crop_id]}/[{','.join(r.classes)}]"])
    return buf.getvalue()


def read_datasplit(csv_path: str | Path, manifest: Manifest) -> list[SplitRow]:
    """Rows of a datasplit CSV, matched to the manifest's crops by zarr root and crop path."""
    p = Path(csv_path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"{p}: cannot read datasplit ({exc.strerror})") from None
    roots, crop_paths = _paths(manifest)
    by_root = {root: name for name, (root, _) in roots.items()}
    by_crop = {(ds, crop_paths.get(int(c["id"]))): int(c["id"]) for c in manifest["crops"] for ds in [c["dataset"]]}
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
        ds = by_root.get(root)
        crop_id = by_crop.get((ds, m["crop"].rstrip("/"))) if ds else None
        if crop_id is None:
            raise InputError(f"{p}: line {n}: crop {fields[3]}/{m['crop']} is not a crop of {manifest.path}")
        names = tuple(s.strip() for s in m["classes"].split(",") if s.strip())
        rows.append(SplitRow(fields[0], crop_id, ds, names))  # type: ignore[arg-type]
    return rows
