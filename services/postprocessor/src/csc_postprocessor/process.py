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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from csc_common.classes import class_kind
from csc_common.errors import InputError
from csc_common.fsutil import atomic_dir
from csc_common.geometry import Geometry
from csc_common.log import progress
from csc_common.manifest import Manifest, new_manifest, now, relpath, write_manifest
from csc_common.volumes import create_array, multiscale_attrs, open_array, open_group

from csc_postprocessor import blockwise as bw
from csc_postprocessor.config import Config
from csc_postprocessor.ops import ArrayLike, Volume, Workspace, make_workspace, run_steps
from csc_postprocessor.steps import Recipes, Step, load_recipes
from csc_postprocessor.userfunc import ProcessFunc, call_checked, load_process_func

log = logging.getLogger("csc.process")


@dataclass(frozen=True)
class Job:
    """One (crop, class) volume to process."""

    crop_id: int
    dataset: str
    name: str
    kind: str
    path: str
    geometry: Geometry

    @property
    def where(self) -> str:
        return f"crop {self.crop_id} class {self.name}"


def jobs_of(manifest: Manifest) -> list[Job]:
    out = []
    for crop in manifest["crops"]:
        for cls in crop["classes"]:
            kind = cls.get("kind") or class_kind(cls["name"])
            out.append(
                Job(
                    int(crop["id"]),
                    crop["dataset"],
                    cls["name"],
                    kind,
                    cls["path"],
                    Geometry.from_json(cls["geometry"]),
                )
            )
    return out


def make_decoder(encoding: dict[str, Any]) -> Any:
    scale = np.float32(encoding["scale"])

    def decode(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32) * scale

    return decode


def finalize(vol: Volume, kind: str) -> tuple[np.dtype, Any]:
    """Output dtype and a per-block converter: uint8 0/1 (semantic) or uint32/uint64 ids (instance)."""
    if kind == "semantic":
        return np.dtype(np.uint8), lambda a: (a != 0).astype(np.uint8)
    if vol.value == "mask":
        return np.dtype(np.uint32), lambda a: (a != 0).astype(np.uint32)
    dtype = bw.label_dtype(vol.count)
    return dtype, lambda a: a.astype(dtype)


def apply_user(func: ProcessFunc, src: ArrayLike, decode: Any, job: Job, ws: Workspace, halo: int) -> Volume | None:
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

    shape = job.geometry.shape
    fallback = False

    def core_of(sl: bw.Slices) -> np.ndarray | None:
        ext = tuple(slice(max(s.start - halo, 0), min(s.stop + halo, n)) for s, n in zip(sl, shape, strict=True))
        data = decode(np.asarray(src[ext]))
        res = call_checked(
            func,
            data,
            class_name=job.name,
            geometry=job.geometry.subgrid(ext),
            where=f"{job.where} block {[s.start for s in sl]}",
        )
        if res is None:
            return None
        return res[tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(sl, ext, strict=True))]

    if job.kind == "semantic":
        mask = ws.new(np.bool_)
        for sl in ws.blocks():
            core = core_of(sl)
            if core is None:
                return None
            mask[sl] = core != 0
        return Volume(mask, "mask")

    def local(sl: bw.Slices) -> tuple[np.ndarray, int]:
        nonlocal fallback
        core = core_of(sl)
        if core is None:
            fallback = True
            return np.zeros(tuple(s.stop - s.start for s in sl), np.int64), 0
        return bw.relabel_by_appearance(core)

    labels, n = bw.label_blockwise(local, shape, ws.factory(), ws.factory(), connectivity=26, block=ws.block)
    return None if fallback else Volume(labels, "labels", n)


def process_job(
    job: Job,
    src: ArrayLike,
    decode: Any,
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


def run(cfg: Config, manifest: Manifest) -> Manifest:
    """Process every (crop, class) of the predictions manifest; returns the processed manifest."""
    started = now()
    recipes: Recipes = load_recipes(cfg.steps)
    func = load_process_func(cfg.process_file) if cfg.process_file else None
    out_manifest = Path(cfg.output)
    zarr_out = out_manifest.with_suffix(".zarr")
    pred_zarr = manifest.resolve(manifest["zarr"])
    open_group(pred_zarr)  # a clear error before any work
    decode = make_decoder(manifest["encoding"])
    jobs = jobs_of(manifest)
    crops: dict[int, dict[str, Any]] = {}
    summary = []
    with atomic_dir(zarr_out) as tmp:
        root = open_group(tmp, mode="w")
        for job in progress(jobs, desc="process", total=len(jobs), unit="volume"):
            t0 = time.perf_counter()
            src = open_array(pred_zarr / job.path)
            if tuple(src.shape) != job.geometry.shape:
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
            entry: dict[str, Any] = {
                "name": job.name,
                "kind": job.kind,
                "path": path,
                "geometry": job.geometry.to_json(),
                "dtype": dtype.name,
                "steps": how,
                "foreground_voxels": fg,
            }
            if job.kind == "instance" and vol.value == "labels":
                entry["objects"] = int(vol.count)
            crops.setdefault(job.crop_id, {"id": job.crop_id, "dataset": job.dataset, "classes": []})
            crops[job.crop_id]["classes"].append(entry)
            mode = "whole" if ws.block is None else f"blocks of {ws.block}"
            summary.append(
                f"  crop{job.crop_id}/{job.name:<12} {job.kind:<8} {dtype.name:<6} "
                f"{'objects=' + str(vol.count) if vol.value == 'labels' else 'fg=' + str(fg):<16} "
                f"{mode:<15} {time.perf_counter() - t0:6.2f}s  {how}"
            )
    data = new_manifest(
        "processed",
        "postprocessor",
        started,
        inputs=[manifest.ref(out_manifest)],
        zarr=relpath(zarr_out, out_manifest),
        crops=list(crops.values()),
    )
    written = write_manifest(out_manifest, data)
    log.info("processed %d volumes of %d crops -> %s\n%s", len(jobs), len(crops), zarr_out, "\n".join(summary))
    return written
