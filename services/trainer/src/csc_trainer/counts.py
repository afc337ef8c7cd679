"""``csc get-counts``: per dataset and class, how many training crops annotate it and how many voxels.

The original counts crop folders on disk (UPSTREAM.md §1.8). Here everything
comes from the dataset manifest, with no scan of the volumes: a crop
"contains" a class when the fetcher recorded ground truth for it, and the
voxel counts are the ones the fetcher recorded per (crop, class)
(``ClassEntry.counts``: ``annotated`` = label known, ``present`` = the class,
at the class's finest level). A manifest written before counts were recorded
says so instead of guessing: the voxel columns stay empty and the number of
crops without counts is reported.
"""

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from csc_common.classes import TESTED_CLASSES
from csc_common.errors import InputError
from csc_common.views import DatasetView, load

from csc_trainer.config import CountsConfig


@dataclass(frozen=True)
class ClassCount:
    """One (dataset, class) line: crops annotating it and the summed voxel counts (None where some are unknown)."""

    dataset: str
    name: str
    crops: int
    annotated_voxels: int | None
    present_voxels: int | None
    present_um3: float | None
    uncounted_crops: int


def count_classes(ds: DatasetView, classes: Sequence[str]) -> list[ClassCount]:
    """Lines for every dataset of ``ds`` (manifest order) and every class of ``classes`` (given order)."""
    out = []
    for d in ds.datasets:
        crops = [c for c in ds.crops_of("train") if c.dataset == d.name]
        for name in classes:
            entries = [e for c in crops if (e := c.get(name)) is not None and e.path]
            counted = [e for e in entries if e.counts is not None]
            complete = len(counted) == len(entries)
            annotated = sum(e.counts.annotated for e in counted if e.counts)
            present = sum(e.counts.present for e in counted if e.counts)
            um3 = sum(e.counts.present * math.prod(e.geometry.voxel_size) / 1e9 for e in counted if e.counts)
            out.append(
                ClassCount(
                    d.name,
                    name,
                    len(entries),
                    annotated if complete else None,
                    present if complete else None,
                    round(um3, 6) if complete else None,
                    len(entries) - len(counted),
                )
            )
    return out


def _cell(v: int | float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(lines: Sequence[ClassCount], n_datasets: int) -> str:
    """The original's "Found N datasets." and one tab-indented block per dataset, with the voxel columns."""
    text = [f"Found {n_datasets} datasets."]
    width = max([len(line.name) for line in lines] + [5])
    head = f"\t{'class':<{width}}  {'crops':>5}  {'annotated_voxels':>16}  {'present_voxels':>14}  {'present_um3':>11}"
    for name in dict.fromkeys(line.dataset for line in lines):
        text += [name, head]
        for x in (x for x in lines if x.dataset == name):
            text.append(
                f"\t{x.name:<{width}}  {x.crops:>5}  {_cell(x.annotated_voxels):>16}  {_cell(x.present_voxels):>14}  "
                f"{_cell(x.present_um3):>11}"
            )
    missing = sum(line.uncounted_crops for line in lines)
    if missing:
        text.append(
            f"{missing} (crop, class) pairs have no recorded voxel counts (a manifest from an older fetch): "
            "rerun csc fetch-data with the same options to record them"
        )
    return "\n".join(text)


def run(cfg: CountsConfig) -> list[ClassCount]:
    """Count from the manifest at ``cfg.dataset``; prints the table (or JSON with ``--json``) on stdout."""
    ds = load(cfg.dataset, DatasetView)
    known = {c.name for crop in ds.crops for c in crop.classes}
    classes = cfg.class_list
    if classes is None:
        classes = list(dict.fromkeys(c.name for crop in ds.crops_of("train") for c in crop.classes if c.path))
    bad = [c for c in classes if c not in known and c not in TESTED_CLASSES]
    if bad:
        raise InputError(
            f"--classes: unknown class(es) {', '.join(bad)}: neither in {ds.where} nor a challenge class (e.g. nuc, er)"
        )
    lines = count_classes(ds, classes)
    if cfg.json:
        doc = {"dataset_manifest": str(ds.path), "datasets": len(ds.datasets), "counts": [asdict(x) for x in lines]}
        print(json.dumps(doc, indent=2))
    else:
        print(table(lines, len(ds.datasets)))
    sys.stdout.flush()
    return lines
