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
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.crops import CropRow, merged_crop_box, read_crop_manifest
from csc_common.errors import InputError
from csc_common.fsutil import sha256_file
from csc_common.geometry import Box, Geometry
from csc_common.manifest import Manifest
from csc_common.volumes import Level, choose_level

from csc_predictor.engines import ModelSpec
from csc_predictor.io import EmSource, em_presence

Shape3 = tuple[int, int, int]
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
class Block:
    """A chunk-aligned box of one target's output grid."""

    target: Target
    index: Shape3
    slices: tuple[slice, slice, slice]

    @property
    def id(self) -> str:
        return f"{self.target.key}-{'_'.join(map(str, self.index))}"


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    blocks: tuple[Block, ...]
    tile: Shape3
    context: Shape3
    chunks: Shape3
    block_shape: Shape3
    hash: str
    params: dict[str, Any]


def parse_shape(text: str, what: str) -> Shape3:
    """'64' or '32,64,64' -> (z, y, x) positive ints."""
    try:
        vals = [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise InputError(f"--{what}: expected one integer or 'z,y,x', got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or any(v < 0 for v in vals):
        raise InputError(f"--{what}: expected one non-negative integer or 'z,y,x', got {text!r}")
    return tuple(vals)  # type: ignore[return-value]


def parse_roi(text: str) -> Box:
    """'z0,y0,x0:z1,y1,x1' (nm) -> Box."""
    try:
        a, b = text.split(":")
        start = tuple(float(v) for v in a.split(","))
        stop = tuple(float(v) for v in b.split(","))
    except ValueError:
        raise InputError(f"--roi: expected 'z0,y0,x0:z1,y1,x1' in nm, got {text!r}") from None
    if len(start) != 3 or len(stop) != 3 or any(e <= s for s, e in zip(start, stop, strict=True)):
        raise InputError(f"--roi: expected 3 starts and 3 larger stops 'z0,y0,x0:z1,y1,x1', got {text!r}")
    return Box(start, stop)  # type: ignore[arg-type]


def parse_shard(text: str, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """'I/N', else JOB_COMPLETION_INDEX + CSC_PREDICT_SHARDS from the environment, else None (no sharding)."""
    env = dict(os.environ) if env is None else env
    if not text and "JOB_COMPLETION_INDEX" in env:
        if "CSC_PREDICT_SHARDS" not in env:
            raise InputError("JOB_COMPLETION_INDEX is set but CSC_PREDICT_SHARDS (the shard count) is not")
        text = f"{env['JOB_COMPLETION_INDEX']}/{env['CSC_PREDICT_SHARDS']}"
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard: expected 'I/N' (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard: need 0 <= I < N, got {text!r}")
    return i, n


def shard_blocks(blocks: Sequence[Block], shard: tuple[int, int] | None) -> list[Block]:
    """The blocks shard ``I`` of ``N`` owns: every N-th block starting at I (disjoint, covering)."""
    if shard is None:
        return list(blocks)
    i, n = shard
    return [b for k, b in enumerate(blocks) if k % n == i]


def output_grid(box: Box, voxel_size: Sequence[float]) -> Geometry:
    """The model-resolution grid anchored at the box's minimum corner and covering it."""
    shape = tuple(max(1, math.ceil(s / v - 1e-6)) for s, v in zip(box.size, voxel_size, strict=True))
    return Geometry(tuple(voxel_size), box.start, shape)  # type: ignore[arg-type]


def em_source(ds_manifest: Manifest, dataset: str, voxel_size: Sequence[float], *, tolerance: float) -> EmSource:
    """The EM level of ``dataset`` matching the model voxel size (closest level, within ``tolerance``)."""
    entry = next((d for d in ds_manifest.data["datasets"] if d["name"] == dataset), None)
    if entry is None:
        names = ", ".join(d["name"] for d in ds_manifest.data["datasets"])
        raise InputError(f"{ds_manifest.path}: dataset {dataset!r} is not in /datasets ({names})")
    levels = [
        Level(lv["path"], Geometry(tuple(lv["voxel_size"]), tuple(lv["translation"]), tuple(lv["shape"])))
        for lv in entry["em"]["levels"]
    ]
    best = choose_level(levels, voxel_size)
    rel = np.abs(np.asarray(best.geometry.voxel_size) - np.asarray(voxel_size)) / np.asarray(voxel_size)
    if float(rel.max()) > tolerance:
        have = "; ".join(f"{lv.path} {list(lv.geometry.voxel_size)}" for lv in levels)
        raise InputError(
            f"dataset {dataset}: model voxel size {list(voxel_size)} nm is not available in the EM "
            f"(levels: {have}; closest {best.path} differs by {rel.max():.0%} > --voxel-tolerance {tolerance:.0%})"
        )
    array_path = ds_manifest.resolve(entry["zarr"]) / entry["em"]["path"] / best.path
    if not (array_path / ".zarray").is_file():
        raise InputError(f"dataset {dataset}: EM level {best.path} not found at {array_path}")
    return EmSource(dataset, array_path, best.path, best.geometry)


def crop_targets(ds_manifest: Manifest, spec: ModelSpec, crops: str, *, tolerance: float) -> list[Target]:
    """One target per selected test crop: the merged box of its test rows, model classes it lists."""
    csv_path = ds_manifest.resolve(ds_manifest.data["test_manifest"])
    rows = read_crop_manifest(csv_path)
    by_crop: dict[int, list[CropRow]] = {}
    for r in rows:
        by_crop.setdefault(r.crop_id, []).append(r)
    if crops.strip() in ("", "test", "*", "all", "train"):  # the fetcher's selectors; only test crops are predicted
        wanted = list(by_crop)
    else:
        try:
            asked = [int(c.strip().removeprefix("crop")) for c in crops.split(",") if c.strip()]
        except ValueError:
            raise InputError(f"--crops: expected 'test' or crop ids like 557,558, got {crops!r}") from None
        wanted = [c for c in asked if c in by_crop]
        if not wanted:
            raise InputError(f"--crops: none of the crop(s) {asked} is in the test manifest {csv_path}")
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
            sources[dataset] = em_source(ds_manifest, dataset, spec.voxel_size, tolerance=tolerance)
        src = sources[dataset]
        geom = output_grid(merged_crop_box(crop_rows), spec.voxel_size)
        present, total = em_presence(src, geom)
        if present == 0:
            raise InputError(
                f"crop {cid}: its EM region is entirely absent from {src.array_path} "
                f"({total} chunk(s) cover the crop box {list(geom.box.start)}..{list(geom.box.stop)} nm, "
                "none on disk); fetch the crop's EM first"
            )
        targets.append(Target(f"crop{cid}", cid, dataset, classes, geom, src))
    return targets


def region_targets(ds_manifest: Manifest, spec: ModelSpec, *, roi: str, volume: str, tolerance: float) -> list[Target]:
    """One target covering ``--roi`` or (``roi`` empty) the whole EM volume of a dataset, every model class."""
    names = [d["name"] for d in ds_manifest.data["datasets"]]
    if not volume:
        if len(names) != 1:
            raise InputError(
                f"--roi/--whole-volume: the dataset manifest holds {len(names)} datasets "
                f"({', '.join(names)}); pick one with --volume"
            )
        volume = names[0]
    src = em_source(ds_manifest, volume, spec.voxel_size, tolerance=tolerance)
    em_box = src.geometry.box
    box = em_box if not roi else parse_roi(roi)
    if em_box.intersect(box) is None:
        raise InputError(
            f"--roi {roi}: does not overlap the EM of {volume} ({list(em_box.start)}..{list(em_box.stop)} nm)"
        )
    geom = output_grid(box, spec.voxel_size)
    classes = tuple(enumerate(spec.classes))
    return [Target(volume, None, volume, classes, geom, src)]


def make_blocks(targets: Sequence[Target], *, block_shape: Shape3, chunks: Shape3) -> tuple[list[Block], Shape3]:
    """Chunk-aligned blocks of every target, C order; block shape rounded up to whole chunks."""
    bs = tuple(max(c, -(-b // c) * c) for b, c in zip(block_shape, chunks, strict=True))
    out = []
    for t in targets:
        counts = [-(-n // b) for n, b in zip(t.geometry.shape, bs, strict=True)]
        for idx in np.ndindex(*counts):
            sl = tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(idx, bs, t.geometry.shape, strict=True))
            out.append(Block(t, tuple(int(i) for i in idx), sl))  # type: ignore[arg-type]
    return out, bs  # type: ignore[return-value]


def target_chunks(geometry: Geometry, chunk: Shape3) -> Shape3:
    return tuple(max(1, min(c, n)) for c, n in zip(chunk, geometry.shape, strict=True))  # type: ignore[return-value]


def build_plan(cfg: Any, spec: ModelSpec, ds_manifest: Manifest) -> Plan:
    """Everything a shard needs to know, validated before any output is touched."""
    if spec.channels != 1:
        raise InputError(
            f"{spec.manifest.path}: /input/channels: the model takes {spec.channels} channels; the EM is one channel"
        )
    tile = parse_shape(cfg.tile, "tile") if cfg.tile else spec.patch_shape
    spec.check_tile(tile)
    context = parse_shape(cfg.context, "context") if cfg.context else tuple(t // 4 for t in tile)
    chunk = parse_shape(cfg.chunk, "chunk")
    block = parse_shape(cfg.block, "block")
    if any(v < 1 for v in (*chunk, *block)):
        raise InputError(f"--chunk/--block must be positive, got {cfg.chunk!r}/{cfg.block!r}")
    if not 0.0 <= cfg.overlap < 1.0:
        raise InputError(f"--overlap must be in [0, 1), got {cfg.overlap}")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.roi and cfg.whole_volume:
        raise InputError("--roi and --whole-volume exclude each other")
    if cfg.roi or cfg.whole_volume:
        targets = region_targets(ds_manifest, spec, roi=cfg.roi, volume=cfg.volume, tolerance=cfg.voxel_tolerance)
    else:
        targets = crop_targets(ds_manifest, spec, cfg.crops, tolerance=cfg.voxel_tolerance)
    if not targets:
        raise InputError(f"no test crop lists any of the model's classes ({', '.join(spec.classes)})")
    # One chunk shape per target (clipped to small crops): the same block grid for every class of a target.
    targets = [dataclasses.replace(t, chunks=target_chunks(t.geometry, chunk)) for t in targets]
    blocks: list[Block] = []
    block_shape = block
    for t in targets:
        b, block_shape = make_blocks([t], block_shape=block, chunks=t.chunks)
        blocks.extend(b)
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
        "dataset_manifest": sha256_file(ds_manifest.path),
        "params": {k: v for k, v in params.items() if k != "batch_size"},
        "targets": [[t.key, t.geometry.to_json(), [c for _, c in t.classes], t.em.level_path] for t in targets],
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return Plan(tuple(targets), tuple(blocks), tile, context, chunk, block_shape, digest, params)  # type: ignore[arg-type]


def markers_dir(output: Path) -> Path:
    """Where a run keeps its plan and done markers: ``<output stem>.blocks`` beside the manifest."""
    return output.with_name(output.stem + ".blocks")
