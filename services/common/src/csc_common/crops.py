"""The challenge's crop manifests (CSV) as typed rows.

Format (UPSTREAM.md §3): header ``crop_name,dataset,class_label,voxel_size,
translation,shape``; vectors are bracketed, ``;``-separated, zyx, e.g.
``[1.74;2.0;2.0]``. One row per (crop, class); the test manifest is the
authority for submission geometry.
"""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from csc_common.errors import GeometryError, InputError
from csc_common.geometry import Box, Geometry

CROP_MANIFEST_HEADER = ("crop_name", "dataset", "class_label", "voxel_size", "translation", "shape")


@dataclass(frozen=True)
class CropRow:
    """One (crop, class) row of a crop manifest."""

    crop_id: int
    dataset: str
    class_label: str
    geometry: Geometry

    @property
    def crop_name(self) -> str:
        return f"crop{self.crop_id}"


def _vector(text: str, where: str) -> list[float]:
    t = text.strip()
    if not (t.startswith("[") and t.endswith("]")):
        raise InputError(f"{where}: expected a bracketed ';' list like [8.0;8.0;8.0], got {text!r}")
    try:
        return [float(v) for v in t[1:-1].split(";")]
    except ValueError:
        raise InputError(f"{where}: not a list of numbers: {text!r}") from None


def format_vector(values: Iterable[float]) -> str:
    """Write a vector the way the challenge manifests do: ``[1.74;2.0;2.0]``."""
    return "[" + ";".join(str(v) for v in values) + "]"


def parse_crop_manifest(text: str, source: str = "<crop manifest>") -> list[CropRow]:
    """Parse crop manifest CSV text into rows; errors name the source and line."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CROP_MANIFEST_HEADER:
        raise InputError(f"{source}: header must be {','.join(CROP_MANIFEST_HEADER)}, got {header!r}")
    rows = []
    for lineno, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        where = f"{source} line {lineno}"
        if len(rec) != 6:
            raise InputError(f"{where}: expected 6 columns, got {len(rec)}")
        try:
            crop_id = int(rec[0].strip().removeprefix("crop"))
        except ValueError:
            raise InputError(f"{where}: crop_name must be an integer id, got {rec[0]!r}") from None
        try:
            geom = Geometry(
                _vector(rec[3], where + " voxel_size"),
                _vector(rec[4], where + " translation"),
                _vector(rec[5], where + " shape"),
            )
        except GeometryError as exc:
            raise InputError(f"{where}: {exc}") from None
        rows.append(CropRow(crop_id, rec[1].strip(), rec[2].strip(), geom))
    return rows


def read_crop_manifest(path: str | Path) -> list[CropRow]:
    """Read a crop manifest CSV file (see `parse_crop_manifest`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"{p}: cannot read crop manifest ({exc.strerror})") from None
    return parse_crop_manifest(text, str(p))


def write_crop_manifest(rows: Iterable[CropRow]) -> str:
    """Crop manifest CSV text for ``rows`` in the challenge's format."""
    lines = [",".join(CROP_MANIFEST_HEADER)]
    for r in rows:
        g = r.geometry
        lines.append(
            f"{r.crop_id},{r.dataset},{r.class_label},{format_vector(g.voxel_size)},"
            f"{format_vector(g.translation)},{format_vector(g.shape)}"
        )
    return "\n".join(lines) + "\n"


def crop_ids(rows: Iterable[CropRow]) -> list[int]:
    """Distinct crop ids in first-seen order."""
    return list(dict.fromkeys(r.crop_id for r in rows))


def merged_crop_box(rows: Iterable[CropRow]) -> Box:
    """The world box covering every row of one crop (union of the rows' boxes).

    The original uses the finest voxel size, the minimum translation and the
    maximum shape; the union of boxes covers the same region without relying
    on the rows sharing an origin.
    """
    boxes = [r.geometry.box for r in rows]
    if not boxes:
        raise InputError("no rows for crop")
    out = boxes[0]
    for b in boxes[1:]:
        out = out.union(b)
    return out
