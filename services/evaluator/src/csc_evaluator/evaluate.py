"""Score a whole submission: discover (crop, class) jobs, run them in a process pool, aggregate.

Which pairs are scored follows the official scorer: every class array of every
crop in the ground-truth zarr (``<truth>/crop<N>/<class>``); a pair the
submission lacks is scored as missing; the geometry a prediction is aligned
to comes from the test crop manifest row of that pair. ``<class>_mask``
arrays in the truth multiply both prediction and truth (documented rule).

Jobs run in a process pool sized from the memory actually available
(cgroup-aware) and are reassembled in job order, so results do not depend on
the number of workers.

``run(cfg)`` is the stage: it reads the inputs, scores, writes RESULT.json,
RESULT_extended.json and the ``scores`` manifest, and returns the manifest.
Which classes are scored as instances: ``--instance-classes``, else the kinds
recorded in ``--dataset``, else the challenge's list; how a class is
*resampled* is always the scorer's own rule (`align.resample_kind`).
"""

import functools
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from csc_common import classes, views, volumes
from csc_common.classes import ClassKind
from csc_common.cli import parse_crop_id, parse_list
from csc_common.crops import CropRow, read_crop_manifest
from csc_common.errors import GeometryError, InputError
from csc_common.fsutil import sha256_file
from csc_common.geometry import Geometry
from csc_common.log import progress_bar
from csc_common.manifest import now, relpath
from csc_common.submission import align
from csc_common.submission.reader import NodeRef, Submission
from csc_common.views import DatasetView, Header, ScoresView

from csc_evaluator import __version__, aggregate, scoring
from csc_evaluator.config import Config
from csc_evaluator.constants import Constants, env_max_workers
from csc_evaluator.io import extended_path, table, write_json
from csc_evaluator.submission import open_submission, read_prediction

log = logging.getLogger("csc.evaluate")

# "challenge" (default): the leaderboard's numbers — the official matching and
#   Hausdorff code, including its id-preserving remap of unmatched predictions —
#   with the documented discovery of classes (multiscale groups scored, *_mask
#   arrays used as masks), as issue 8 asks;
# "documented": the documented Hausdorff rule as well;
# "official": reproduce the official code's discovery quirks too.
Rules = Literal["challenge", "documented", "official"]
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Job:
    """One (crop, class) to score; everything a worker process needs, picklable."""

    crop: str
    label: str
    truth: str
    mask: str | None
    pred: NodeRef | None  # the submitted class entry; None: not submitted (missing)
    target: dict[str, Any] | None  # test-manifest geometry (json); needed when pred is set
    instance: bool  # scored as instance (--instance-classes, --dataset's kinds or the challenge's list)
    align_kind: ClassKind  # resampled as instance/semantic (the scorer's own rule, as upstream)
    empty: bool = False  # score an all-empty prediction instead of pred (--compare-empty)
    voxels: int = 0


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    total_evals: int = 0


def _is_array(path: Path) -> bool:
    return (path / ".zarray").is_file()


def truth_labels(crop_dir: Path, *, rules: Rules) -> list[str]:
    """Class arrays of a truth crop; ``*_mask`` arrays are masks, not classes (unless rules='official')."""
    names = sorted(d.name for d in crop_dir.iterdir() if d.is_dir() and _is_array(d))
    if rules == "official":
        return names
    return [n for n in names if not n.endswith(MASK_SUFFIX)]


def _array_shape(path: Path) -> tuple[int, ...]:
    """Shape from ``.zarray`` without opening the array through zarr (planning touches every array)."""
    try:
        return tuple(int(v) for v in json.loads((path / ".zarray").read_text())["shape"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: unreadable zarr array metadata ({exc})") from None


def _crop_id(name: str, where: Path) -> int:
    return parse_crop_id(name, f"{where}: truth folder")


def plan_jobs(
    submission: Submission,
    truth_root: Path,
    rows: Sequence[CropRow],
    *,
    instance_classes: Sequence[str],
    rules: Rules = "challenge",
    compare_empty: bool = False,
) -> tuple[Plan, Plan]:
    """Jobs for the submission and (with ``compare_empty``) for an all-empty submission."""
    if not truth_root.is_dir():
        raise InputError(f"{truth_root}: ground-truth zarr not found")
    by_key = {(r.crop_id, r.class_label): r for r in rows}
    order = {cid: k for k, cid in enumerate(dict.fromkeys(r.crop_id for r in rows))}
    crops = [d.name for d in truth_root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    crops.sort(key=lambda c: (order.get(_crop_id(c, truth_root), len(order)), c))
    if not crops:
        raise InputError(f"{truth_root}: ground-truth zarr holds no crop folders")
    labels = {crop: truth_labels(truth_root / crop, rules=rules) for crop in crops}
    if not any(labels.values()):
        raise InputError(
            f"{truth_root}: ground-truth zarr holds no class arrays (expected crop<N>/<class> arrays with a .zarray)"
        )
    matched = submission.match_crops(crops)
    total = len(by_key)  # the official counts distinct (crop, class) keys of the test manifest
    plan, empty = Plan(total_evals=total), Plan(total_evals=total)
    for crop in crops:
        cid = _crop_id(crop, truth_root)
        crop_dir = matched.get(crop)
        pred_entries = submission.classes(crop_dir) if crop_dir is not None else {}
        if rules == "official":  # upstream lists arrays only: class groups count as missing
            pred_entries = {k: v for k, v in pred_entries.items() if submission.is_array(v)}
        for label in labels[crop]:
            truth = truth_root / crop / label
            mask = truth_root / crop / f"{label}{MASK_SUFFIX}"
            row = by_key.get((cid, label))
            pred = pred_entries.get(label)
            if pred is not None and row is None:
                raise InputError(f"crop {cid} class {label}: in the ground truth but not in the test manifest")
            shape = _array_shape(truth)
            job = Job(
                crop=crop,
                label=label,
                truth=str(truth),
                mask=str(mask) if _is_array(mask) else None,
                pred=submission.ref(pred) if pred is not None else None,
                target=row.geometry.to_json() if row is not None else None,
                instance=label in instance_classes,
                align_kind=align.resample_kind(label),
                voxels=int(np.prod(shape, dtype=np.int64)),
            )
            plan.jobs.append(job)
            if compare_empty:
                empty.jobs.append(replace(job, pred=None, empty=True))
    return plan, empty


def _truth_voxel_size(arr: Any, where: str) -> list[float]:
    vs = dict(arr.attrs).get("voxel_size")
    if vs is None:
        raise InputError(f"{where}: ground-truth array has no 'voxel_size' attribute")
    return [float(v) for v in vs]


def run_job(job: Job, constants: Constants, rules: Rules) -> dict[str, Any]:
    """Score one job (runs in a worker process). Returns the per-crop record."""
    where = f"crop {job.crop.removeprefix('crop')} class {job.label}"
    truth_arr = volumes.open_array(job.truth)
    if job.pred is None and not job.empty:
        truth = np.asarray(truth_arr[...])
        rec = scoring.missing_score(truth, instance=job.instance)
        return {
            **rec,
            "num_voxels": int(truth.size),
            "voxel_size": _truth_voxel_size(truth_arr, job.truth),
            "is_missing": True,
        }
    truth = np.asarray(truth_arr[...])
    if job.target is not None:
        target = Geometry.from_json(job.target)
        voxel_size = list(target.voxel_size)
        if tuple(truth.shape) != target.shape:
            raise GeometryError(
                f"{where}: ground-truth shape {tuple(truth.shape)} does not match the test manifest {target.shape}"
            )
    else:
        voxel_size = _truth_voxel_size(truth_arr, job.truth)
        target = Geometry(voxel_size, (0.0, 0.0, 0.0), truth.shape)
    if job.empty or job.pred is None:  # an all-empty prediction (a missing pair returned above)
        pred = np.zeros(truth.shape, dtype=np.uint8)
    else:
        try:
            pred = read_prediction(job.pred, target, kind=job.align_kind)
        except InputError as exc:
            raise type(exc)(f"{where}: {exc}") from None
    if job.mask is not None:
        mask = np.asarray(volumes.open_array(job.mask)[...])
        if mask.shape != truth.shape:
            raise GeometryError(f"{where}: mask shape {mask.shape} does not match the ground truth {truth.shape}")
        pred = pred * mask
        truth = truth * mask
    if job.instance:
        hausdorff: Literal["documented", "official"] = "documented" if rules == "documented" else "official"
        rec = scoring.score_instance(pred, truth, voxel_size, constants=constants, mode=hausdorff)
    else:
        rec = scoring.score_semantic(pred, truth)
    return {**rec, "num_voxels": int(truth.size), "voxel_size": voxel_size, "is_missing": False}


# ---------------------------------------------------------------- pool sizing
def available_memory() -> int:
    """Bytes this process may still use: the smaller of free RAM and the cgroup's remaining limit."""
    import psutil

    avail = int(psutil.virtual_memory().available)
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw == "max":
                continue
            limit = int(raw)
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit < (1 << 60):
            avail = min(avail, max(limit - usage, 0))
    return avail


BYTES_PER_VOXEL = 48  # truth + aligned prediction + components + remap + EDT scratch, instance worst case


def pool_size(jobs: Sequence[Job], requested: int | None, *, memory: int | None = None) -> int:
    """Workers that fit: min(requested or CPUs, jobs, 70 % of available memory / biggest job's peak)."""
    if not jobs:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    want = requested or min(cpus, 8)
    peak = max(j.voxels for j in jobs) * BYTES_PER_VOXEL + (64 << 20)
    mem = available_memory() if memory is None else memory
    fit = max(1, int(0.7 * mem) // peak)
    return max(1, min(want, len(jobs), fit))


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where the OS has it: no re-import of ``__main__`` and a fast start; the parent holds no
    decompression threads at that point (it has only read zarr metadata)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run_jobs(
    jobs: Sequence[Job],
    constants: Constants,
    *,
    rules: Rules,
    workers: int,
    desc: str = "scoring",
    on_done: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every job; results come back in job order whatever the worker count."""
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].voxels)  # big first: better packing
    with progress_bar(desc=desc, total=len(jobs), unit="class") as bar:
        if workers <= 1:
            for i in order:
                results[i] = run_job(jobs[i], constants, rules)
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
                futures = {pool.submit(run_job, jobs[i], constants, rules): i for i in order}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()  # re-raises a worker's error here
                    bar.update(1)
    return [r for r in results if r is not None]


def assemble(jobs: Sequence[Job], results: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{crop: {label: record}}`` in job order."""
    per_crop: dict[str, dict[str, dict[str, Any]]] = {}
    for job, rec in zip(jobs, results, strict=True):
        per_crop.setdefault(job.crop, {})[job.label] = rec
    return per_crop


def score(
    plan: Plan,
    constants: Constants,
    *,
    instance_classes: Sequence[str],
    rules: Rules,
    workers: int,
    git_version: str,
    desc: str = "scoring",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a plan and return (extended, public) result dicts."""
    results = run_jobs(plan.jobs, constants, rules=rules, workers=workers, desc=desc)
    per_crop = assemble(plan.jobs, results)
    combined = aggregate.combine_scores(per_crop, instance_classes=instance_classes)
    extended = aggregate.extended_view(per_crop, combined, total_evals=plan.total_evals, git_version=git_version)
    public = aggregate.public_view(extended, aggregate.submitted_labels(per_crop))
    return extended, public


# ---------------------------------------------------------------- the stage
@dataclass(frozen=True)
class _Inputs:
    submission: Path
    truth: Path
    test_manifest: Path
    result: Path
    scores: Path


def _resolve_inputs(cfg: Config) -> _Inputs:
    truth = Path(cfg.truth)
    if not truth.is_dir():
        raise InputError(f"{truth}: ground-truth zarr folder not found")
    manifest = Path(cfg.test_manifest) if cfg.test_manifest else truth.parent / "test_crop_manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{manifest}: test crop manifest not found (give --test-manifest CSV)")
    if cfg.work_dir:
        work = Path(cfg.work_dir)
        if not work.is_dir():
            raise InputError(f"--work-dir {work}: {'not a folder' if work.exists() else 'folder not found'}")
        log.warning("--work-dir %s: not needed any more, nothing is extracted (zips are read in place)", work)
    result = Path(cfg.output or "result.json")
    scores = Path(cfg.scores_manifest) if cfg.scores_manifest else result.with_name("scores.json")
    return _Inputs(Path(cfg.submission_source), truth, manifest, result, scores)


def scored_as_instance(cfg: Config, dataset: DatasetView | None) -> list[str]:
    """``--instance-classes``, else the classes ``--dataset`` records as instances, else the challenge's list."""
    if cfg.instance_classes:
        return parse_list(cfg.instance_classes, "--instance-classes")
    if dataset is not None:
        return classes.instance_classes(dataset.class_kinds())
    return classes.instance_classes()


def _file_ref(kind: str, path: Path, at: Path) -> dict[str, str]:
    """Provenance entry of an input that is not a manifest (the test CSV, the submission zip)."""
    return {"kind": kind, "path": relpath(path, at), "sha256": sha256_file(path)}


def run(cfg: Config) -> ScoresView:
    """Score the submission and write every output; returns the scores manifest as written."""
    started = now()
    t0 = time.perf_counter()
    dataset = views.load(cfg.dataset, DatasetView) if cfg.dataset else None
    paths = _resolve_inputs(cfg)
    rows = read_crop_manifest(paths.test_manifest)
    constants = Constants.from_env()
    instance_classes = scored_as_instance(cfg, dataset)
    git_version = f"csc-evaluator {__version__}"
    with open_submission(paths.submission, constants, rows) as sub:
        plan, empty_plan = plan_jobs(
            sub,
            paths.truth,
            rows,
            instance_classes=instance_classes,
            rules=cfg.rules,
            compare_empty=cfg.compare_empty,
        )
        workers = pool_size(plan.jobs, cfg.workers or env_max_workers())
        log.info(
            "scoring %d (crop, class) pairs of %d test rows with %d worker(s)",
            len(plan.jobs),
            plan.total_evals,
            workers,
        )
        score_plan = functools.partial(
            score,
            constants=constants,
            instance_classes=instance_classes,
            rules=cfg.rules,
            workers=workers,
            git_version=git_version,
        )
        extended, public = score_plan(plan)
    empty_public = score_plan(empty_plan, desc="scoring empty")[1] if cfg.compare_empty else None
    ext_path = extended_path(paths.result)
    write_json(paths.result, public)
    write_json(ext_path, extended)
    inputs = [_file_ref("test-crop-manifest", paths.test_manifest, paths.scores)]
    if sub.source.is_file():
        inputs.append(_file_ref("submission-zip", sub.source, paths.scores))
    if dataset is not None:
        inputs.append(dataset.ref(paths.scores))
    details: dict[str, Any] = {
        "truth": relpath(paths.truth, paths.scores),
        "rules": cfg.rules,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    if empty_public is not None:
        details["empty_overall_score"] = empty_public["overall_score"]
    view = ScoresView(
        header=Header.new("evaluator", started, inputs=inputs),
        result=paths.result,
        extended=ext_path,
        details=details,
        **{key: public[key] for key in aggregate.AGGREGATE_KEYS if key != "git_version"},  # the public scores
    )
    written = views.save(view, paths.scores)
    log.info("per-class scores (%s):\n%s", paths.submission, table(extended, set(instance_classes), empty=empty_public))
    log.info("wrote %s, %s and %s in %.1f s", paths.result, ext_path, paths.scores, time.perf_counter() - t0)
    return written
