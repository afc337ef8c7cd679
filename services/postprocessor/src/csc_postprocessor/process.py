"""The postprocessor stage: reads a ``predictions`` manifest, writes processed.zarr + a ``processed`` manifest.

Reads ``predictions.zarr`` (the arrays the manifest's class ``path`` names,
``crop<N>/<class>/s0``, of encoded probabilities, probability = value *
encoding.scale) and writes ``processed.zarr`` beside the output manifest in the
same layout: an OME-NGFF 0.4 multiscale group ``crop<N>/<class>`` holding one
level ``s0`` whose own attrs repeat ``voxel_size``/``translation``; uint8 0/1
for semantic classes, uint32 (uint64 where needed) instance ids. Volumes up
to ``max_whole_voxels`` (every test crop) are processed whole, larger ones
blockwise with identical results. The zarr is written under a temporary name
and renamed when complete; the manifest is written last.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from csc_common import views
from csc_common.blocks import Block
from csc_common.classes import ClassKind
from csc_common.errors import InputError
from csc_common.fsutil import atomic_dir
from csc_common.geometry import Geometry, shape3
from csc_common.log import progress
from csc_common.manifest import now
from csc_common.views import ClassEntry, CropEntry, Encoding, Header, PredictionsView, ProcessedView
from csc_common.volumes import create_array, multiscale_attrs, open_array, open_group

from csc_postprocessor import blockwise as bw
from csc_postprocessor.config import Config
from csc_postprocessor.ops import ArrayLike, Decode, Volume, Workspace, make_workspace, run_steps
from csc_postprocessor.steps import Recipes, Step, load_recipes
from csc_postprocessor.userfunc import ProcessFunc, call_checked, load_process_func

log = logging.getLogger("csc.process")


@dataclass(frozen=True)
class Job:
    """One (crop, class) volume to process."""

    crop_id: int
    dataset: str
    name: str
    kind: ClassKind
    path: str
    geometry: Geometry

    @property
    def where(self) -> str:
        return f"crop {self.crop_id} class {self.name}"


def jobs_of(predictions: PredictionsView) -> list[Job]:
    """Every (crop, class) of the manifest's test crops, with the kind the manifest records for it."""
    out = []
    for crop in predictions.crops:
        if crop.id is None:
            continue
        for c in crop.classes:
            if c.path is None:
                raise InputError(f"{predictions.where}: crop {crop.id} class {c.name} has no array path")
            out.append(Job(crop.id, crop.dataset, c.name, c.kind, c.path, c.geometry))
    return out


def make_decoder(encoding: Encoding) -> Decode:
    scale = np.float32(encoding.scale)

    def decode(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32) * scale

    return decode


def finalize(vol: Volume, kind: ClassKind) -> tuple[np.dtype, Callable[[np.ndarray], np.ndarray]]:
    """Output dtype and a per-block converter: uint8 0/1 (semantic) or uint32/uint64 ids (instance)."""
    if kind == "semantic":
        return np.dtype(np.uint8), lambda a: (a != 0).astype(np.uint8)
    if vol.value == "mask":
        return np.dtype(np.uint32), lambda a: (a != 0).astype(np.uint32)
    dtype = bw.label_dtype(vol.count)
    return dtype, lambda a: a.astype(dtype)


def apply_user(func: ProcessFunc, src: ArrayLike, decode: Decode, job: Job, ws: Workspace, halo: int) -> Volume | None:
    """Run process_func whole, or per block with ``halo`` voxels of context (instance ids merged across faces)."""
    if ws.block is None:
        out = call_checked(
            func, decode(np.asarray(src[...])), class_name=job.name, geometry=job.geometry, where=job.where
        )
        if out is None:
            return None
        if job.kind == "semantic" or out.dtype == bool:
            return Volume(out != 0, "mask")
        labels, n = bw.relabel_by_appearance(out)
        return Volume(labels.astype(bw.label_dtype(n)), "labels", n)

    fallback = False

    def core_of(b: Block) -> np.ndarray | None:
        res = call_checked(
            func,
            decode(np.asarray(src[b.read])),
            class_name=job.name,
            geometry=job.geometry.subgrid(b.read),
            where=f"{job.where} block {[s.start for s in b.write]}",
        )
        return None if res is None else res[b.write_in_read]

    if job.kind == "semantic":
        mask = ws.new(np.bool_)
        for b in ws.blocks(halo=halo):
            core = core_of(b)
            if core is None:
                return None
            mask[b.write] = core != 0
        return Volume(mask, "mask")

    def local(b: Block) -> tuple[np.ndarray, int]:
        nonlocal fallback
        core = core_of(b)
        if core is None:
            fallback = True
            return np.zeros(b.write_shape, np.int64), 0
        return bw.relabel_by_appearance(core)

    labels, n = bw.label_blockwise(
        local, job.geometry.shape, ws.factory(), ws.factory(), connectivity=26, block=ws.block, halo=halo
    )
    return None if fallback else Volume(labels, "labels", n)


def process_job(
    job: Job,
    src: ArrayLike,
    decode: Decode,
    steps: tuple[Step, ...],
    func: ProcessFunc | None,
    cfg: Config,
    scratch_root: Path,
) -> tuple[Volume, Workspace, str]:
    """Process one volume; returns the result, its workspace (caller closes it) and what ran."""
    n_vox = job.geometry.num_voxels
    whole = cfg.blockwise == "never" or (cfg.blockwise == "auto" and n_vox <= cfg.max_whole_voxels)
    ws = make_workspace(job.geometry.shape, None if whole else cfg.block_size, scratch_root)
    try:
        vol = apply_user(func, src, decode, job, ws, cfg.halo) if func is not None else None
        how = "process_func"
        if vol is None:
            vol = run_steps(src, decode, steps, voxel_size=job.geometry.voxel_size, ws=ws)
            how = " -> ".join(s.describe() for s in steps)
        if vol.value == "probability":  # pragma: no cover - recipes always threshold first
            raise InputError(f"{job.where}: the steps produce no mask")
    except BaseException:
        ws.close()
        raise
    return vol, ws, how


def run(cfg: Config) -> ProcessedView:
    """Process every (crop, class) of the predictions manifest; returns the processed manifest as written."""
    started = now()
    predictions = views.load(cfg.predictions, PredictionsView)
    recipes: Recipes = load_recipes(cfg.steps)
    func = load_process_func(cfg.process_file) if cfg.process_file else None
    out_manifest = Path(cfg.output)
    zarr_out = out_manifest.with_suffix(".zarr")
    open_group(predictions.zarr)  # a clear error before any work
    decode = make_decoder(predictions.encoding)
    jobs = jobs_of(predictions)
    regions = [c.name for c in predictions.crops if c.id is None]
    if regions:
        log.info("skipping %d region volume(s) (%s): only test crops are processed", len(regions), ", ".join(regions))
    crops: dict[int, list[ClassEntry]] = {}
    datasets: dict[int, str] = {}
    summary = []
    with atomic_dir(zarr_out) as tmp:
        root = open_group(tmp, mode="w")
        for job in progress(jobs, desc="process", total=len(jobs), unit="volume"):
            t0 = time.perf_counter()
            src = open_array(predictions.zarr / job.path)
            if shape3(src.shape) != job.geometry.shape:
                raise InputError(
                    f"{job.where}: array {job.path} has shape {tuple(src.shape)}, "
                    f"the predictions manifest says {job.geometry.shape}"
                )
            steps = recipes.for_class(job.name, job.kind)
            vol, ws, how = process_job(job, src, decode, steps, func, cfg, zarr_out.parent)
            try:
                dtype, convert = finalize(vol, job.kind)
                group = root.require_group(f"crop{job.crop_id}/{job.name}")
                group.attrs.update(multiscale_attrs([("s0", job.geometry)], name=job.name))
                path = f"crop{job.crop_id}/{job.name}/s0"
                arr = create_array(
                    group,
                    "s0",
                    shape=job.geometry.shape,
                    dtype=dtype,
                    attrs={"voxel_size": list(job.geometry.voxel_size), "translation": list(job.geometry.translation)},
                )
                fg = 0
                for sl in ws.pointwise_blocks():
                    block = convert(np.asarray(vol.data[sl]))
                    fg += int(np.count_nonzero(block))
                    arr[sl] = block
            finally:
                ws.close()
            details: dict[str, Any] = {"steps": how, "foreground_voxels": fg}
            if job.kind == "instance" and vol.value == "labels":
                details["objects"] = int(vol.count)
            crops.setdefault(job.crop_id, []).append(
                ClassEntry(job.name, job.kind, job.geometry, path, dtype.name, details)
            )
            datasets[job.crop_id] = job.dataset
            mode = "whole" if ws.block is None else f"blocks of {ws.block}"
            summary.append(
                f"  crop{job.crop_id}/{job.name:<12} {job.kind:<8} {dtype.name:<6} "
                f"{'objects=' + str(vol.count) if vol.value == 'labels' else 'fg=' + str(fg):<16} "
                f"{mode:<15} {time.perf_counter() - t0:6.2f}s  {how}"
            )
    view = ProcessedView(
        header=Header.new("postprocessor", started, inputs=[predictions.ref(out_manifest)]),
        zarr=zarr_out,
        crops=tuple(CropEntry(cid, datasets[cid], tuple(classes)) for cid, classes in crops.items()),
    )
    written = views.save(view, out_manifest)
    log.info("processed %d volumes of %d crops -> %s\n%s", len(jobs), len(crops), zarr_out, "\n".join(summary))
    return written
