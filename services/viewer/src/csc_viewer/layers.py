"""Layer specs: what neuroglancer shows, decided without a browser.

Pure functions from catalogue ``Volume`` records to ``ViewSpec``/``LayerSpec``
values (names, layer types, voxel sizes, offsets, shaders, colours, the crop
the view opens on). ``ng.py`` turns the specs into neuroglancer state; tests
check the specs directly.

Naming follows the original ``csc visualize``: the EM layer is ``fibsem``,
every other layer ``crop<N>/<kind>/<class>``. Layout choices:

* EM -> image layer, served at the level closest to the finest voxel size
  among the shown crops (a real EM s0 is far too large to serve whole);
* instance classes (truth, processed, submission) -> segmentation layers;
* semantic classes -> image layers whose shader paints voxels > 0 in the
  class colour (a coloured mask);
* predictions -> image layers of probabilities (stored value x encoding scale)
  with a shader: colour x probability, transparent below a threshold.

Each layer keeps its own voxel size and translation (any float, not a
multiple of the voxel size), so anisotropic and offset data line up with the
EM in world (nm) coordinates.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from csc_common.classes import TESTED_CLASSES
from csc_common.geometry import Box, Vec3, vec3
from csc_common.volumes import Level, choose_level

from csc_viewer.catalog import KINDS, Volume

Role = Literal["em", "mask", "labels", "probability"]
# Which kind's layers start visible for the focus crop, in order of preference.
VISIBLE_PREFERENCE = ("gt", "processed", "submission", "predictions")

# 20 well-separated colours (Sasha Trubetskoy's list); class i of the official order gets colour i mod 20.
PALETTE: tuple[str, ...] = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#ffffff",
)  # fmt: skip
# Preferred colours of the classes the demo data uses, so they stay distinct from each other.
_PREFERRED = {
    "mito": "#e6194b",
    "nuc": "#4363d8",
    "ves": "#3cb44b",
    "ecs": "#ffe119",
    "cyto": "#f58231",
    "er": "#911eb4",
    "cell": "#46f0f0",
    "ld": "#f032e6",
    "lyso": "#bcf60c",
    "endo": "#008080",
}


def class_color(name: str) -> str:
    """A stable colour per class name: the same in every layer, montage and chart."""
    if name in _PREFERRED:
        return _PREFERRED[name]
    if name in TESTED_CLASSES:
        return PALETTE[TESTED_CLASSES.index(name) % len(PALETTE)]
    return PALETTE[int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(PALETTE)]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def mask_shader(color: str, opacity: float = 0.6) -> str:
    """Paint voxels > 0 in ``color`` (data served as uint8 0/1)."""
    return (
        f'#uicontrol vec3 color color(default="{color}")\n'
        f"#uicontrol float opacity slider(min=0, max=1, default={opacity})\n"
        "void main() {\n"
        "  float v = toNormalized(getDataValue());\n"
        "  emitRGBA(vec4(color, v > 0.0 ? opacity : 0.0));\n"
        "}\n"
    )


def probability_shader(color: str, threshold: float = 0.05) -> str:
    """Colour x probability; alpha = probability, nothing below ``threshold`` (data served as float32)."""
    return (
        f'#uicontrol vec3 color color(default="{color}")\n'
        f"#uicontrol float threshold slider(min=0, max=1, default={threshold})\n"
        "void main() {\n"
        "  float p = clamp(getDataValue(), 0.0, 1.0);\n"
        "  emitRGBA(vec4(color, p >= threshold ? p : 0.0));\n"
        "}\n"
    )


@dataclass(frozen=True)
class LayerSpec:
    """One neuroglancer layer: what to serve (volume + level), how to draw it, where it sits."""

    name: str
    layer_type: Literal["image", "segmentation"]
    role: Role
    volume: Volume
    level: Level
    visible: bool
    color: str
    shader: str | None

    @property
    def voxel_size(self) -> Vec3:
        return self.level.geometry.voxel_size

    @property
    def translation(self) -> Vec3:
        return self.level.geometry.translation

    @property
    def voxel_offset(self) -> Vec3:
        """Translation in voxels of the layer's own grid (may be fractional)."""
        return vec3(t / v for t, v in zip(self.translation, self.voxel_size, strict=True))


@dataclass(frozen=True)
class ViewSpec:
    """One neuroglancer viewer (one dataset: each dataset has its own world frame)."""

    dataset: str
    layers: tuple[LayerSpec, ...]
    scales: tuple[float, float, float]  # global z, y, x voxel size in nm
    focus_crop: int | None
    box: Box | None  # the focus crop's box in nm
    position: tuple[float, float, float]  # global voxel coordinates (zyx) of the box centre
    cross_section_scale: float  # global voxels per screen pixel, fitting the box in the viewport

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)


def layer_name(volume: Volume) -> str:
    """``fibsem`` for EM, ``crop<N>/<kind>/<class>`` otherwise (the original's names)."""
    if volume.kind == "em":
        return "fibsem"
    return f"crop{volume.crop}/{volume.kind}/{volume.name}"


def layer_for(volume: Volume, *, visible: bool, em_voxel_size: Sequence[float] | None = None) -> LayerSpec:
    """The layer spec of one volume (EM: the level closest to ``em_voxel_size``)."""
    color = class_color(volume.name)
    if volume.kind == "em":
        level = choose_level(volume.levels, em_voxel_size) if em_voxel_size is not None else volume.levels[0]
        return LayerSpec("fibsem", "image", "em", volume, level, True, "#ffffff", None)
    level = volume.levels[0]
    if volume.kind == "predictions":
        return LayerSpec(
            layer_name(volume), "image", "probability", volume, level, visible, color, probability_shader(color)
        )
    if volume.class_kind == "instance":
        return LayerSpec(layer_name(volume), "segmentation", "labels", volume, level, visible, color, None)
    return LayerSpec(layer_name(volume), "image", "mask", volume, level, visible, color, mask_shader(color))


def crop_box(volumes: Sequence[Volume]) -> Box:
    """The crop's box: the union of the boxes of its finest-grid volumes.

    All classes of a crop cover the same physical region, but a coarser
    class's grid (translation at voxel centres, shifted by half a finer voxel)
    computes a box that sticks out by part of a voxel; the finest grids define
    the crop.
    """
    finest = min(float(np.prod(v.geometry.voxel_size)) for v in volumes)
    return Box.union_all(
        v.geometry.box for v in volumes if float(np.prod(v.geometry.voxel_size)) <= finest * (1 + 1e-6)
    )


def build_views(
    volumes: Sequence[Volume],
    *,
    viewport: tuple[int, int] = (1024, 768),
    focus_crop: int | None = None,
    layout: str = "4panel",
) -> list[ViewSpec]:
    """One ViewSpec per dataset among ``volumes`` (EM first, then by crop id, pipeline kind, class name).

    The view opens on ``focus_crop`` (default: the smallest crop id shown in
    that dataset): centred on its box, zoomed so the box fills each panel of ``layout`` in ``viewport``.
    Only that crop's layers of the first kind in ``VISIBLE_PREFERENCE`` start
    visible; the rest start hidden, as in the original.
    """
    views = []
    for dataset in sorted({v.dataset for v in volumes}):
        vols = [v for v in volumes if v.dataset == dataset]
        em = [v for v in vols if v.kind == "em"]
        crops = sorted({v.crop for v in vols if v.crop is not None})
        focus = focus_crop if focus_crop in crops else (crops[0] if crops else None)
        crop_vols = sorted((v for v in vols if v.crop is not None), key=lambda v: (v.crop, KINDS.index(v.kind), v.name))
        finest = _finest(crop_vols) if crop_vols else None
        focus_vols = [v for v in crop_vols if v.crop == focus]
        show_kind = next((k for k in VISIBLE_PREFERENCE if any(v.kind == k for v in focus_vols)), None)
        layers = [layer_for(v, visible=True, em_voxel_size=finest) for v in em]
        layers += [layer_for(v, visible=(v.crop == focus and v.kind == show_kind)) for v in crop_vols]
        scales = finest if finest is not None else layers[0].voxel_size
        box = crop_box(focus_vols) if focus_vols else layers[0].level.geometry.box
        views.append(
            ViewSpec(
                dataset=dataset,
                layers=tuple(layers),
                scales=vec3(scales),
                focus_crop=focus,
                box=box,
                position=_centre(box, scales),
                cross_section_scale=_fit_scale(box, scales, viewport, layout),
            )
        )
    return views


def _finest(volumes: Sequence[Volume]) -> Vec3:
    """Per-axis finest voxel size among ``volumes``."""
    return vec3(np.min([v.geometry.voxel_size for v in volumes], axis=0))


def _centre(box: Box, scales: Sequence[float]) -> Vec3:
    return vec3((a + b) / 2 / s for a, b, s in zip(box.start, box.stop, scales, strict=True))


def _fit_scale(box: Box, scales: Sequence[float], viewport: tuple[int, int], layout: str = "xy") -> float:
    """Global voxels per pixel so the box fits each panel of ``layout`` with a 10% margin.

    neuroglancer measures cross-section zoom in canonical voxels, the smallest
    global scale; 4-panel layouts split the viewport in two each way and also
    show the z extent (xz, yz panels).
    """
    width, height = float(viewport[0]), float(viewport[1])
    size = box.size
    if layout in ("4panel", "4panel-alt"):
        width, height = width / 2, height / 2
        nm_per_px = max(max(size[1], size[0]) / height, max(size[2], size[0]) / width)
    elif layout.startswith(("xy-", "xz-", "yz-")):
        nm_per_px = max(size[1] / height, size[2] / (width / 2))
    else:
        nm_per_px = max(size[1] / height, size[2] / width)
    return float(nm_per_px * 1.1 / min(scales))
