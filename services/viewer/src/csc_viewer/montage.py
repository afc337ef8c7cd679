"""Browser-free pictures: a montage of orthogonal slices per crop, and a bar chart of scores.

Montage: for one crop, the central xy, xz and yz slices of the crop box,
one column per kind (EM, truth, predictions, processed, submission as
selected), every class drawn over the EM in its colour (the same colours as
the neuroglancer layers), with a legend. Everything is resampled onto one
reference grid per crop (the finest voxel size among the crop's volumes,
over the crop box) with nearest (labels) or linear (EM, probabilities)
sampling, so anisotropic and offset volumes line up. Images are drawn with
their extent in nm, so anisotropic slices keep their true aspect.

Chart: one bar per class (``combined_score`` of a ``scores`` manifest),
instance and semantic classes in two colours, the overall scores as lines.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from csc_common.errors import InputError
from csc_common.fsutil import atomic_write_bytes
from csc_common.geometry import Geometry, vec3
from csc_common.views import ScoresView
from csc_common.volumes import choose_level, read_resampled

from csc_viewer.catalog import Volume, open_level
from csc_viewer.layers import class_color, crop_box, hex_to_rgb

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("csc.viewer")

COLUMN_ORDER = ("em", "gt", "predictions", "processed", "submission")
COLUMN_TITLES = {
    "em": "EM",
    "gt": "truth",
    "predictions": "predictions",
    "processed": "processed",
    "submission": "submission",
}
# (normal axis, plane name, (vertical axis, horizontal axis))
ORIENTATIONS = ((0, "xy", (1, 2)), (1, "xz", (0, 2)), (2, "yz", (0, 1)))
MAX_SIDE = 512  # reference grids are coarsened to at most this many voxels per side
MASK_ALPHA = 0.55
INSTANCE_COLOR = "#1f77b4"
SEMANTIC_COLOR = "#ff7f0e"


@dataclass(frozen=True)
class ClassSlice:
    """One class's 2D slice for one panel: a mask/labels (uint) or probabilities (float)."""

    name: str
    values: np.ndarray
    role: str  # "mask" | "labels" | "probability"


# -- pure picture composition -----------------------------------------------------


def normalize_em(em: np.ndarray) -> np.ndarray:
    """EM to [0, 1] with a 1-99 percentile stretch (flat input -> mid grey)."""
    em = em.astype(np.float32)
    lo, hi = np.percentile(em, [1, 99]) if em.size else (0.0, 1.0)
    if hi <= lo:
        return np.full(em.shape, 0.5, np.float32)
    return np.clip((em - lo) / (hi - lo), 0, 1)


def instance_shade(ids: np.ndarray) -> np.ndarray:
    """A brightness factor in [0.55, 1] per instance id, so touching objects differ."""
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(97)
    return 0.55 + 0.45 * h.astype(np.float32) / 96.0


def compose(em: np.ndarray | None, classes: Sequence[ClassSlice], shape: tuple[int, int]) -> np.ndarray:
    """RGB uint8 picture: EM in grey (black without EM), classes blended on top in their colours.

    Masks and labels are painted one after another (labels shaded per id).
    Probabilities are shown as one layer: each voxel in the colour of its most
    probable class, as opaque as that probability, so several classes'
    probabilities stay readable instead of mixing into one hue.
    """
    base = normalize_em(em) if em is not None else np.zeros(shape, np.float32)
    rgb = np.repeat(base[..., None], 3, axis=2)
    probs = [c for c in classes if c.role == "probability"]
    if probs:
        stack = np.stack([np.clip(c.values.astype(np.float32), 0, 1) for c in probs])
        best = np.argmax(stack, axis=0)
        colors = np.asarray([hex_to_rgb(class_color(c.name)) for c in probs], np.float32) / 255.0
        alpha = np.max(stack, axis=0) * 0.85
        rgb = rgb * (1 - alpha[..., None]) + colors[best] * alpha[..., None]
    for c in classes:
        if c.role == "probability":
            continue
        color = np.asarray(hex_to_rgb(class_color(c.name)), np.float32) / 255.0
        present = c.values > 0
        alpha = np.where(present, MASK_ALPHA, 0.0).astype(np.float32)
        if c.role == "labels":
            paint = color[None, None, :] * instance_shade(c.values)[..., None]
        else:
            paint = np.broadcast_to(color, rgb.shape)
        rgb = rgb * (1 - alpha[..., None]) + paint * alpha[..., None]
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def reference_grid(volumes: Sequence[Volume]) -> Geometry:
    """The crop's grid: its box at the finest voxel size present (coarsened to <= MAX_SIDE per side)."""
    box = crop_box(volumes)
    finest = vec3(np.min([v.geometry.voxel_size for v in volumes], axis=0))
    factor = max(1.0, max(box.covering_grid(finest).shape) / MAX_SIDE)
    return box.covering_grid([v * factor for v in finest])


def slice_grid(ref: Geometry, axis: int) -> Geometry:
    """The one-voxel-thick grid of ``ref``'s central plane normal to ``axis``."""
    centre = ref.shape[axis] // 2
    slices = [slice(0, n) for n in ref.shape]
    slices[axis] = slice(centre, centre + 1)
    return ref.subgrid(slices)


# -- reading --------------------------------------------------------------------


def _read_plane(volume: Volume, target: Geometry, axis: int) -> np.ndarray:
    if volume.kind == "em":
        level = choose_level(volume.levels, target.voxel_size)
        order = 1
    else:
        level = volume.levels[0]
        order = 0 if volume.kind != "predictions" else 1
    arr = open_level(volume, level)
    data = read_resampled(arr, level.geometry, target, order=order, fill=0)
    plane = np.take(data, 0, axis=axis)
    if volume.kind == "predictions":
        plane = plane.astype(np.float32) * np.float32(volume.scale)
    return plane


def _role(volume: Volume) -> str:
    if volume.kind == "predictions":
        return "probability"
    return "labels" if volume.class_kind == "instance" else "mask"


def crop_montage(crop_volumes: Sequence[Volume], em: Volume | None, out: Path, *, dpi: int = 100) -> Path:
    """Write the montage PNG of one crop (``crop_volumes``: every selected volume of that crop)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not crop_volumes:
        raise InputError("montage: no volumes selected for this crop")
    crop = crop_volumes[0].crop
    ref = reference_grid(crop_volumes)
    columns = [k for k in COLUMN_ORDER if (k == "em" and em is not None) or any(v.kind == k for v in crop_volumes)]
    ncols = len(columns)
    fig, axes = plt.subplots(3, ncols, figsize=(3.2 * ncols, 3.2 * 3 + 0.9), squeeze=False)
    for row, (axis, plane_name, (va, ha)) in enumerate(ORIENTATIONS):
        target = slice_grid(ref, axis)
        plane_shape = (target.shape[va], target.shape[ha])
        em_plane = _read_plane(em, target, axis) if em is not None else None
        box = target.box
        extent = (box.start[ha], box.stop[ha], box.stop[va], box.start[va])
        for col, kind in enumerate(columns):
            classes = (
                []
                if kind == "em"
                else [
                    ClassSlice(v.name, _read_plane(v, target, axis), _role(v))
                    for v in sorted(crop_volumes, key=lambda v: v.name)
                    if v.kind == kind
                ]
            )
            ax = axes[row][col]
            ax.imshow(compose(em_plane, classes, plane_shape), extent=extent, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(COLUMN_TITLES[kind], fontsize=11)
            if col == 0:
                where = target.translation[axis] + target.voxel_size[axis] / 2
                ax.set_ylabel(f"{plane_name} @ {'zyx'[axis]}={where:.0f} nm", fontsize=9)
    names = sorted({v.name for v in crop_volumes})
    kinds = {v.name: v.class_kind for v in crop_volumes}
    handles = [Patch(facecolor=class_color(n), edgecolor="black", label=f"{n} ({kinds[n] or '?'})") for n in names]
    per_row = max(1, min(len(handles), int(3.2 * ncols / 1.8)))
    legend_rows = math.ceil(len(handles) / per_row)
    fig.legend(handles=handles, loc="lower center", ncol=per_row, fontsize=9, frameon=False)
    vs = ", ".join(f"{v:g}" for v in ref.voxel_size)
    fig.suptitle(f"{crop_volumes[0].dataset}  crop{crop}  (voxel {vs} nm, zyx)", fontsize=12)
    fig.tight_layout(rect=(0, 0.01 + 0.03 * legend_rows, 1, 0.97))
    return _save(fig, out, dpi)


def _save(fig: "Figure", out: Path, dpi: int) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return out


def montage_paths(template: Path, crops: Sequence[int]) -> dict[int, Path]:
    """Where each crop's montage goes: ``{crop}`` in the name, or ``<stem>-crop<N>`` for several crops."""
    if "{crop}" in template.name:
        return {c: template.with_name(template.name.replace("{crop}", str(c))) for c in crops}
    if len(crops) == 1:
        return {crops[0]: template}
    return {c: template.with_name(f"{template.stem}-crop{c}{template.suffix or '.png'}") for c in crops}


def stack_pngs(parts: Sequence[Path], out: Path, *, max_parts: int = 24) -> Path:
    """One PNG of ``parts`` stacked top to bottom (white padding): the overview of several crops.

    Written at the ``--montage`` path itself when there are several crops, so
    a Makefile target named after it exists once the per-crop files do.
    """
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in parts[:max_parts]]
    width = max(im.width for im in images)
    sheet = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        sheet.paste(im, ((width - im.width) // 2, y))
        y += im.height
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    return out


# -- scores chart -----------------------------------------------------------------


def score_rows(scores: ScoresView) -> list[tuple[str, float, bool]]:
    """(label, combined score, scored as instance) per label, in the manifest's order; missing/None count as 0.

    Whether a class is an instance class is what the scores manifest says it
    was scored as, not a list of names.
    """
    kinds = scores.class_kinds()
    rows = []
    for label, vals in scores.label_scores.items():
        score = vals.get("combined_score")
        if score is None:
            score = vals.get("iou", vals.get("f1", 0.0))
        value = float(score) if score is not None and math.isfinite(float(score)) else 0.0
        rows.append((label, value, kinds[label] == "instance"))
    return rows


def scores_chart(scores: ScoresView, out: Path, *, title: str = "", dpi: int = 100) -> Path:
    """Bar chart PNG of per-class combined scores with the overall scores as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = score_rows(scores)
    if not rows:
        raise InputError(f"{scores.where}: /label_scores is empty; nothing to chart")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(rows) + 2) + 2.0, 4.2))
    x = np.arange(len(rows))
    bars = ax.bar(
        x,
        [r[1] for r in rows],
        color=[INSTANCE_COLOR if r[2] else SEMANTIC_COLOR for r in rows],
        edgecolor="black",
        linewidth=0.5,
    )
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, [r[0] for r in rows], rotation=60, ha="right", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("combined score")
    handles: list[Patch | Line2D] = [
        Patch(color=INSTANCE_COLOR, label="instance"),
        Patch(color=SEMANTIC_COLOR, label="semantic"),
    ]
    lines: tuple[tuple[float | None, Literal["-", "--", ":"], str], ...] = (
        (scores.overall_score, "-", "overall"),
        (scores.overall_instance_score, "--", "instance mean"),
        (scores.overall_semantic_score, ":", "semantic mean"),
    )
    for val, style, label in lines:
        if val is not None and math.isfinite(float(val)):
            ax.axhline(float(val), color="black", linestyle=style, linewidth=1)
            handles.append(Line2D([], [], color="black", linestyle=style, label=f"{label} {float(val):.3f}"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title or "per-class scores")
    fig.tight_layout()
    return _save(fig, out, dpi)
