"""The predictor's work: plan, predict every block of this shard, finalize the manifest.

Reads an ``onnx-model`` and a ``dataset`` manifest; writes ``<output>.zarr``
(``crop<N>/<class>`` OME-NGFF multiscale groups, or ``<dataset>/<class>`` for
``--roi`` / ``--whole-volume``, each holding one level ``s0`` at the model voxel
size whose own attrs repeat ``voxel_size`` + ``translation``) and, once every
block is done, the ``predictions`` manifest (class ``path`` = the ``s0`` array).
Progress lives in per-block done markers (``<output stem>.blocks/``), so a
killed or retried shard skips finished blocks and ``finalize`` can tell which
blocks are missing. Nothing is touched before the whole plan has been
validated (and an unsharded run that meets bad input mid-way, e.g. a
truncated EM chunk, removes what it wrote), so bad input leaves no output.
"""

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from csc_common import views
from csc_common.errors import CscError, InputError, StageFailed
from csc_common.geometry import Geometry, Shape3, int3, slices3
from csc_common.log import progress
from csc_common.manifest import now
from csc_common.views import ClassEntry, CropEntry, DatasetView, Encoding, Header, PredictionsView
from csc_common.volumes import open_array

from csc_predictor.config import Config, parse_shard
from csc_predictor.engines import ModelSpec, make_engine, probe
from csc_predictor.io import BlockMarkers, em_presence, encode, encoding_scale, ensure_array, read_em
from csc_predictor.plan import Plan, TargetBlock, build_plan, markers_dir, shard_blocks
from csc_predictor.tiling import Infer, sliding_window

log = logging.getLogger("csc.predict")


def load_inputs(cfg: Config) -> tuple[ModelSpec, DatasetView, Plan]:
    """The input manifests and the plan, every check done before any output is touched or an engine imported."""
    spec = ModelSpec.load(cfg.model)
    ds = views.load(cfg.dataset, DatasetView)
    parse_shard(cfg.shard)
    if cfg.engine == "onnx" and not spec.onnx_path.is_file():
        raise InputError(f"{spec.manifest.path}: /onnx/path: {spec.onnx_path} not found")
    return spec, ds, build_plan(cfg, spec, ds)


def input_geometry(tb: TargetBlock, plan: Plan) -> tuple[Geometry, Shape3]:
    """The grid read for a block: its read region (write grown by the context), grown to at least one tile (centred).

    Also returns where the write region starts inside that grid.
    """
    lo, hi = [], []
    for r, t in zip(tb.block.read, plan.tile, strict=True):
        extra = max(0, t - (r.stop - r.start))
        lo.append(r.start - extra // 2)
        hi.append(r.stop + extra - extra // 2)
    offset = int3(w.start - a for w, a in zip(tb.write, lo, strict=True))
    return tb.target.geometry.subgrid(slices3(lo, hi)), offset


def predict_block(
    block: TargetBlock, plan: Plan, spec: ModelSpec, engine: Infer, *, cfg: Config, em_array: Any = None
) -> dict[str, np.ndarray] | None:
    """Per-class probabilities (float32) of one block; None where the block has no EM on disk."""
    t = block.target
    out_geom = t.geometry.subgrid(block.write)
    if em_presence(t.em, out_geom)[0] == 0:
        return None
    in_geom, off = input_geometry(block, plan)
    raw = read_em(t.em, in_geom, arr=em_array)
    if raw is None:
        return None
    x = raw * np.float32(spec.scale) + np.float32(spec.offset)
    probs = sliding_window(
        x,
        engine,
        tile=plan.tile,
        n_classes=len(spec.classes),
        overlap=cfg.overlap,
        blend=cfg.blend,
        batch_size=cfg.batch_size,
        tta=cfg.tta,
    )
    sl = slices3(off, (o + n for o, n in zip(off, out_geom.shape, strict=True)))
    return {name: probs[ch][sl] for ch, name in t.classes}


def prepare_outputs(plan: Plan, output: Path, *, sharded: bool, dtype: str) -> BlockMarkers:
    """Drop a stale manifest, start an unsharded run of another plan afresh, record the plan, create the arrays.

    Shards never delete the zarr: another shard of the same plan may already be writing. Markers are keyed
    by the plan hash and other plans' markers are dropped (their blocks get overwritten); every block, empty
    ones too, is rewritten, so a reused zarr keeps nothing stale.
    """
    zarr_root = output.with_suffix(".zarr")
    markers = BlockMarkers(markers_dir(output), plan.hash)
    output.unlink(missing_ok=True)
    if not sharded and markers.plan_hash() != plan.hash:
        markers.remove()
        shutil.rmtree(zarr_root, ignore_errors=True)
    markers.forget_other_plans()
    markers.write_plan({"blocks": len(plan.blocks), "params": plan.params})
    for t in plan.targets:
        for _, name in t.classes:
            ensure_array(zarr_root, t.path(name), t.geometry, chunks=t.chunks, dtype=dtype)
    return markers


def run(cfg: Config) -> PredictionsView | None:
    """Predict this shard's blocks; without sharding also write the manifest and return it (None for a shard)."""
    started = now()
    spec, ds, plan = load_inputs(cfg)
    output = Path(cfg.output)
    shard = parse_shard(cfg.shard)
    engine = make_engine(spec, engine=cfg.engine, provider=cfg.provider, threads=cfg.threads)
    probe(engine, spec, plan.tile)
    markers = prepare_outputs(plan, output, sharded=shard is not None, dtype=cfg.dtype)
    mine = shard_blocks(plan.blocks, shard)
    todo = [b for b in mine if not markers.is_done(b.id)]
    log.info(
        "%s: %d block(s) in the plan, %d for this shard, %d already done; engine %s on %s",
        output.name,
        len(plan.blocks),
        len(mine),
        len(mine) - len(todo),
        engine.name,
        engine.provider,
    )
    zarr_root = output.with_suffix(".zarr")
    arrays: dict[str, Any] = {}
    em_arrays: dict[Path, Any] = {}
    t0 = time.perf_counter()
    voxels = 0
    try:
        for block in progress(todo, desc="predict", total=len(todo), unit="block"):
            t = block.target
            if t.em.array_path not in em_arrays:
                em_arrays[t.em.array_path] = open_array(t.em.array_path)
            b0 = time.perf_counter()
            probs = predict_block(block, plan, spec, engine, cfg=cfg, em_array=em_arrays[t.em.array_path])
            for _, name in t.classes:
                key = t.path(name)
                if key not in arrays:
                    arrays[key] = open_array(zarr_root / key, mode="r+")
                # A block without EM is written as fill (0) too, so a reused zarr holds no stale values.
                arrays[key][block.write] = 0 if probs is None else encode(probs[name], cfg.dtype)
            voxels += int(np.prod(block.block.write_shape))
            markers.mark_done(
                block.id,
                {
                    "block": block.id,
                    "shard": list(shard) if shard else None,
                    "empty": probs is None,
                    "provider": engine.provider,
                    "engine": engine.name,
                    "threads": engine.threads,
                    "started": started,
                    "seconds": round(time.perf_counter() - b0, 3),
                },
            )
    except InputError:
        # Bad input found mid-run (an unreadable EM chunk): an unsharded run leaves nothing behind.
        # Other failures keep finished blocks so a retry resumes.
        if shard is None:
            markers.remove()
            shutil.rmtree(zarr_root, ignore_errors=True)
        raise
    secs = time.perf_counter() - t0
    log.info(
        "predicted %d block(s), %d voxels in %.1f s (%.0f voxels/s)",
        len(todo),
        voxels,
        secs,
        voxels / secs if secs > 0 else 0.0,
    )
    if shard is not None:
        log.info("shard %d/%d done; run 'csc-predict finalize' with the same arguments once every shard is", *shard)
        return None
    return _finalize(cfg, spec, ds, plan, started=started)


def finalize(cfg: Config) -> PredictionsView:
    """``csc-predict finalize``: write the predictions manifest once every block of the plan is done (exit 1 if not)."""
    spec, ds, plan = load_inputs(cfg)
    return _finalize(cfg, spec, ds, plan)


def _finalize(
    cfg: Config, spec: ModelSpec, ds: DatasetView, plan: Plan, *, started: str | None = None
) -> PredictionsView:
    """Write the predictions manifest if every block of the plan is done; else list the missing ones (exit 1)."""
    output = Path(cfg.output)
    markers = BlockMarkers(markers_dir(output), plan.hash)
    done = markers.done_ids()
    if not done and output.is_file():
        try:
            written = views.load(output, PredictionsView)
        except CscError:  # not a manifest of ours: finalize overwrites it below, or reports the missing blocks
            written = None
        if written is not None and written.plan_hash == plan.hash:  # finalized already (a rerun)
            log.info("%s: already finalized for this plan", output)
            return written
    if not done:
        raise StageFailed(
            f"{markers.folder}: no block of this plan is done for {output}; run the predictor "
            "(or its shards) with the same arguments first"
        )
    missing = [(k, b) for k, b in enumerate(plan.blocks) if b.id not in done]
    if missing:
        shard = parse_shard(cfg.shard)
        n = shard[1] if shard else int(os.environ.get("CSC_PREDICT_SHARDS", "0") or 0)
        ids = ", ".join(b.id for _, b in missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
        msg = f"{len(missing)} of {len(plan.blocks)} block(s) not done: {ids}"
        if n:
            owners = sorted({k % n for k, _ in missing})
            msg += f"; rerun shard(s) {', '.join(f'{i}/{n}' for i in owners)}"
        raise StageFailed(msg)
    records = markers.records(b.id for b in plan.blocks)
    providers = sorted({r.get("provider", "?") for r in records})
    threads = records[0].get("threads", {}) if records else {}
    zarr_root = output.with_suffix(".zarr")
    crops = tuple(
        CropEntry(
            t.crop_id,
            t.dataset,
            tuple(ClassEntry(name, plan.kinds[name], t.geometry, t.path(name), cfg.dtype) for _, name in t.classes),
        )
        for t in plan.targets
    )
    details: dict[str, Any] = {
        "engine": cfg.engine,
        "threads": threads,
        "tiling": {
            k: plan.params[k] for k in ("tile", "overlap", "blend", "batch_size", "tta", "context", "block", "chunk")
        },
        "selection": {k: plan.params[k] for k in ("crops", "roi", "whole_volume", "volume")},
        "em_levels": sorted({f"{t.dataset}:{t.em.level_path}" for t in plan.targets}),
        "counts": {
            "blocks": len(plan.blocks),
            "empty_blocks": sum(1 for r in records if r.get("empty")),
            "shards": len({tuple(r["shard"]) for r in records if r.get("shard")}) or 1,
            "seconds": round(sum(float(r.get("seconds", 0.0)) for r in records), 3),
        },
    }
    first = started or min((str(r["started"]) for r in records if r.get("started")), default=None) or now()
    view = PredictionsView(
        header=Header.new("predictor", first, inputs=[spec.manifest.ref(output), ds.ref(output)]),
        details=details,
        zarr=zarr_root,
        encoding=Encoding(cfg.dtype, encoding_scale(cfg.dtype)),
        crops=crops,
        provider=",".join(providers),
        plan_hash=plan.hash,
    )
    written = views.save(view, output)
    markers.remove()
    _summary(plan, written, output)
    return written


def _summary(plan: Plan, view: PredictionsView, output: Path) -> None:
    log.info(
        "predictions: %s (%s, provider %s, tile %s, overlap %s, blend %s%s)",
        output,
        view.details["engine"],
        view.provider,
        "x".join(map(str, plan.tile)),
        plan.params["overlap"],
        plan.params["blend"],
        ", flip TTA" if plan.params["tta"] else "",
    )
    for t in plan.targets:
        g = t.geometry
        log.info(
            "  %-12s %-10s %s voxels @ %s nm  classes: %s",
            t.key,
            t.dataset,
            "x".join(map(str, g.shape)),
            "x".join(f"{v:g}" for v in g.voxel_size),
            ", ".join(c for _, c in t.classes),
        )
