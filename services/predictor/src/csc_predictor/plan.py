"""Planning: which volumes to predict (crops or a region), their output grids, and the block list.

The plan is a pure function of the input manifests and the options, so every
shard of a sharded run computes the same blocks in the same order and takes
a disjoint subset (round robin). Blocks are whole output chunks, so shards
never write the same chunk. The plan's hash ties done markers to the
parameters that produced them.
"""

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.blocks import Block, aligned_block_shape, iter_block_grid
from csc_common.classes import ClassKind
from csc_common.cli import parse_crop_ids, parse_shape3
from csc_common.crops import CropRow, merged_crop_box
from csc_common.errors import InputError
from csc_common.fsutil import sha256_file
from csc_common.geometry import Geometry, Shape3, Slices3, shape3
from csc_common.views import DatasetView
from csc_common.volumes import choose_level

from csc_predictor.config import Config, parse_roi
from csc_predictor.engines import ModelSpec
from csc_predictor.io import EmSource, em_presence

log = logging.getLogger("csc.predict")


@dataclass(frozen=True)
class Target:
    """One output volume: a test crop (``crop<N>``) or a region of a dataset (``<dataset>``)."""

    key: str
    crop_id: int | None
    dataset: str
    classes: tuple[tuple[int, str], ...]  # (model output channel, class name)
    geometry: Geometry
    em: EmSource
    chunks: Shape3 = (64, 64, 64)

    def group(self, name: str) -> str:
        """The class's OME-NGFF multiscale group, ``<key>/<class>`` (UPSTREAM.md §6)."""
        return f"{self.key}/{name}"

    def path(self, name: str) -> str:
        """The class's data array (the manifest's ``path``): level ``s0`` of its group."""
        return f"{self.group(name)}/s0"


@dataclass(frozen=True)
class TargetBlock:
    """One block of one target's output grid: a chunk-aligned write region, read grown by the EM context."""

    target: Target
    block: Block

    @property
    def id(self) -> str:
        """``<target key>-<z_y_x>``: names the block's done marker, so it must not change between runs."""
        return f"{self.target.key}-{self.block.id}"

    @property
    def write(self) -> Slices3:
        return self.block.write


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    blocks: tuple[TargetBlock, ...]
    tile: Shape3
    context: Shape3
    chunks: Shape3
    hash: str
    params: dict[str, Any]
    kinds: Mapping[str, ClassKind]  # of every model class (recorded in the predictions manifest)


def shard_blocks(blocks: Sequence[TargetBlock], shard: tuple[int, int] | None) -> list[TargetBlock]:
    """The blocks shard ``I`` of ``N`` owns: every N-th block starting at I (disjoint, covering)."""
    if shard is None:
        return list(blocks)
    i, n = shard
    return [b for k, b in enumerate(blocks) if k % n == i]


def em_source(ds: DatasetView, dataset: str, voxel_size: Sequence[float], *, tolerance: float) -> EmSource:
    """The EM level of ``dataset`` matching the model voxel size (closest level, within ``tolerance``)."""
    entry = ds.dataset(dataset)
    levels = entry.as_levels()
    best = choose_level(levels, voxel_size)
    rel = np.abs(np.asarray(best.geometry.voxel_size) - np.asarray(voxel_size)) / np.asarray(voxel_size)
    if float(rel.max()) > tolerance:
        have = "; ".join(f"{lv.path} {list(lv.geometry.voxel_size)}" for lv in levels)
        raise InputError(
            f"dataset {dataset}: model voxel size {list(voxel_size)} nm is not available in the EM "
            f"(levels: {have}; closest {best.path} differs by {rel.max():.0%} > --voxel-tolerance {tolerance:.0%})"
        )
    array_path = entry.level_array(best.path)
    if not (array_path / ".zarray").is_file():
        raise InputError(f"dataset {dataset}: EM level {best.path} not found at {array_path}")
    return EmSource(dataset, array_path, best.path, best.geometry)


def crop_targets(ds: DatasetView, spec: ModelSpec, crops: str, *, tolerance: float) -> list[Target]:
    """One target per selected test crop: the merged box of its test rows, model classes it lists."""
    by_crop: dict[int, list[CropRow]] = {}
    for r in ds.test_rows():
        by_crop.setdefault(r.crop_id, []).append(r)
    if crops.strip() in ("", "test", "*", "all", "train"):  # the fetcher's selectors; only test crops are predicted
        wanted = list(by_crop)
    else:
        asked = parse_crop_ids(crops, "--crops")
        wanted = [c for c in asked if c in by_crop]
        if not wanted:
            raise InputError(f"--crops: none of the crop(s) {asked} is in the test manifest {ds.test_manifest}")
        if len(wanted) < len(asked):  # the Makefile passes one CROPS to fetch and predict: training ids are fine
            log.info("--crops: skipping %s (not test crops)", [c for c in asked if c not in by_crop])
    sources: dict[str, EmSource] = {}
    targets = []
    for cid in wanted:
        crop_rows = by_crop[cid]
        labels = {r.class_label for r in crop_rows}
        classes = tuple((i, c) for i, c in enumerate(spec.classes) if c in labels)
        if not classes:
            continue
        dataset = crop_rows[0].dataset
        if dataset not in sources:
            sources[dataset] = em_source(ds, dataset, spec.voxel_size, tolerance=tolerance)
        src = sources[dataset]
        geom = merged_crop_box(crop_rows).covering_grid(spec.voxel_size)
        present, total = em_presence(src, geom)
        if present == 0:
            raise InputError(
                f"crop {cid}: its EM region is entirely absent from {src.array_path} "
                f"({total} chunk(s) cover the crop box {list(geom.box.start)}..{list(geom.box.stop)} nm, "
                "none on disk); fetch the crop's EM first"
            )
        targets.append(Target(f"crop{cid}", cid, dataset, classes, geom, src))
    return targets


def region_targets(ds: DatasetView, spec: ModelSpec, *, roi: str, volume: str, tolerance: float) -> list[Target]:
    """One target covering ``--roi`` or (``roi`` empty) the whole EM volume of a dataset, every model class."""
    names = [d.name for d in ds.datasets]
    if not volume:
        if len(names) != 1:
            raise InputError(
                f"--roi/--whole-volume: the dataset manifest holds {len(names)} datasets "
                f"({', '.join(names)}); pick one with --volume"
            )
        volume = names[0]
    src = em_source(ds, volume, spec.voxel_size, tolerance=tolerance)
    em_box = src.geometry.box
    box = em_box if not roi else parse_roi(roi)
    if em_box.intersect(box) is None:
        raise InputError(
            f"--roi {roi}: does not overlap the EM of {volume} ({list(em_box.start)}..{list(em_box.stop)} nm)"
        )
    classes = tuple(enumerate(spec.classes))
    return [Target(volume, None, volume, classes, box.covering_grid(spec.voxel_size), src)]


def target_blocks(target: Target, block_shape: Shape3, context: Shape3) -> list[TargetBlock]:
    """The target's blocks in C order: ``block_shape`` rounded up to whole chunks, read grown by ``context``.

    Reads are not clipped: the EM reader edge-pads outside the volume.
    """
    bs = aligned_block_shape(block_shape, target.chunks)
    return [TargetBlock(target, b) for b in iter_block_grid(target.geometry.shape, bs, halo=context, clip_read=False)]


def target_chunks(geometry: Geometry, chunk: Shape3) -> Shape3:
    return shape3(max(1, min(c, n)) for c, n in zip(chunk, geometry.shape, strict=True))


def class_kinds(ds: DatasetView, spec: ModelSpec) -> dict[str, ClassKind]:
    """Kind of each model class: as the dataset's test crops record it, else as the model manifest does."""
    recorded = {c.name: c.kind for crop in ds.crops_of("test") for c in crop.classes}
    return {name: recorded.get(name, spec.class_kinds[name]) for name in spec.classes}


def build_plan(cfg: Config, spec: ModelSpec, ds: DatasetView) -> Plan:
    """Everything a shard needs to know, validated before any output is touched."""
    if spec.channels != 1:
        raise InputError(
            f"{spec.manifest.path}: /input/channels: the model takes {spec.channels} channels; the EM is one channel"
        )
    tile = parse_shape3(cfg.tile, "--tile") if cfg.tile else spec.patch_shape
    spec.check_tile(tile)
    context = parse_shape3(cfg.context, "--context", minimum=0) if cfg.context else shape3(t // 4 for t in tile)
    chunk = parse_shape3(cfg.chunk, "--chunk")
    block = parse_shape3(cfg.block, "--block")
    if cfg.roi or cfg.whole_volume:
        targets = region_targets(ds, spec, roi=cfg.roi, volume=cfg.volume, tolerance=cfg.voxel_tolerance)
    else:
        targets = crop_targets(ds, spec, cfg.crops, tolerance=cfg.voxel_tolerance)
    if not targets:
        raise InputError(f"no test crop lists any of the model's classes ({', '.join(spec.classes)})")
    # One chunk shape per target (clipped to small crops): the same block grid for every class of a target.
    targets = [dataclasses.replace(t, chunks=target_chunks(t.geometry, chunk)) for t in targets]
    blocks = [b for t in targets for b in target_blocks(t, block, context)]
    params = {
        "engine": cfg.engine,
        "tile": list(tile),
        "overlap": cfg.overlap,
        "blend": cfg.blend,
        "tta": cfg.tta,
        "context": list(context),
        "block": list(block),
        "chunk": list(chunk),
        "dtype": cfg.dtype,
        "crops": cfg.crops,
        "roi": cfg.roi,
        "whole_volume": cfg.whole_volume,
        "volume": cfg.volume,
        "batch_size": cfg.batch_size,
    }
    ident = {
        "onnx_sha256": spec.onnx_sha256,
        "dataset_manifest": sha256_file(ds.path) if ds.path is not None else None,
        "params": {k: v for k, v in params.items() if k != "batch_size"},
        "targets": [[t.key, t.geometry.to_json(), [c for _, c in t.classes], t.em.level_path] for t in targets],
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return Plan(tuple(targets), tuple(blocks), tile, context, chunk, digest, params, class_kinds(ds, spec))


def markers_dir(output: Path) -> Path:
    """Where a run keeps its plan and done markers: ``<output stem>.blocks`` beside the manifest."""
    return output.with_name(output.stem + ".blocks")
