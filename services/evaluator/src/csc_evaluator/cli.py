"""csc-evaluate / ``csc evaluate``: score a submission by the challenge's rules.

Reads a submission (zip, folder with one zip, or zarr folder), the ground-truth
zarr and the test crop manifest; writes RESULT.json (the official public
result), RESULT_extended.json (per-crop counts and statuses) and a ``scores``
manifest (default ``scores.json`` beside RESULT), and prints a per-class table
on stderr. Exit codes: 0 ok, 1 failed, 2 bad input (hostile zip, bad geometry,
missing files).
"""

import logging
import time
from pathlib import Path
from typing import Any

from csc_common.classes import INSTANCE_CLASSES
from csc_common.cli import parse_config, run_main
from csc_common.crops import read_crop_manifest
from csc_common.errors import InputError
from csc_common.fsutil import sha256_file
from csc_common.manifest import new_manifest, now, relpath, write_manifest

from csc_evaluator import __version__
from csc_evaluator.config import Config
from csc_evaluator.constants import Constants, env_max_workers
from csc_evaluator.evaluate import plan_jobs, pool_size, score
from csc_evaluator.io import extended_path, table, write_json
from csc_evaluator.submission import open_submission

PROG = "csc-evaluate"
log = logging.getLogger("csc.evaluate")


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(Config, argv, PROG)
    run(cfg)
    return 0


def _resolve_inputs(cfg: Config) -> tuple[Path, Path, Path, Path, Path]:
    if cfg.submission and cfg.submission_path and cfg.submission != cfg.submission_path:
        raise InputError(f"two submissions given ({cfg.submission!r} and -s {cfg.submission_path!r}); give one")
    sub = cfg.submission or cfg.submission_path
    if not sub:
        raise InputError("no submission given (SUBMISSION or -s PATH)")
    if not cfg.truth:
        raise InputError("no ground truth given (--truth / -t PATH)")
    truth = Path(cfg.truth)
    if not truth.is_dir():
        raise InputError(f"{truth}: ground-truth zarr folder not found")
    manifest = Path(cfg.test_manifest) if cfg.test_manifest else truth.parent / "test_crop_manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{manifest}: test crop manifest not found (give --test-manifest CSV)")
    result = Path(cfg.output or "result.json")
    scores = Path(cfg.scores_manifest) if cfg.scores_manifest else result.with_name("scores.json")
    return Path(sub), truth, manifest, result, scores


def run(cfg: Config) -> dict[str, Any]:
    """Score the submission and write every output; returns the public result."""
    started = now()
    t0 = time.perf_counter()
    sub_path, truth, manifest_path, result_path, scores_path = _resolve_inputs(cfg)
    rows = read_crop_manifest(manifest_path)
    constants = Constants.from_env()
    instance_classes = (
        [c.strip() for c in cfg.instance_classes.split(",") if c.strip()]
        if cfg.instance_classes
        else list(INSTANCE_CLASSES)
    )
    git_version = f"csc-evaluator {__version__}"
    with open_submission(sub_path, constants, work_dir=cfg.work_dir or None) as sub:
        plan, empty_plan = plan_jobs(
            sub.root, truth, rows, instance_classes=instance_classes, rules=cfg.rules, compare_empty=cfg.compare_empty
        )
        workers = pool_size(plan.jobs, cfg.workers or env_max_workers())
        log.info(
            "scoring %d (crop, class) pairs of %d test rows with %d worker(s)",
            len(plan.jobs),
            plan.total_evals,
            workers,
        )
        extended, public = score(
            plan,
            constants,
            instance_classes=instance_classes,
            rules=cfg.rules,
            workers=workers,
            git_version=git_version,
        )
    empty_public = None
    if cfg.compare_empty:
        _, empty_public = score(
            empty_plan,
            constants,
            instance_classes=instance_classes,
            rules=cfg.rules,
            workers=workers,
            git_version=git_version,
            desc="scoring empty",
        )
    ext_path = extended_path(result_path)
    write_json(result_path, public)
    write_json(ext_path, extended)
    inputs = [
        {
            "kind": "test-crop-manifest",
            "path": relpath(manifest_path, scores_path),
            "sha256": sha256_file(manifest_path),
        }
    ]
    if sub.source.is_file():
        inputs.append(
            {"kind": "submission-zip", "path": relpath(sub.source, scores_path), "sha256": sha256_file(sub.source)}
        )
    body: dict[str, Any] = {
        "result": relpath(result_path, scores_path),
        "extended": relpath(ext_path, scores_path),
        "overall_score": public["overall_score"],
        "overall_instance_score": public["overall_instance_score"],
        "overall_semantic_score": public["overall_semantic_score"],
        "label_scores": public["label_scores"],
        "total_evals": public["total_evals"],
        "num_evals_done": public["num_evals_done"],
        "truth": relpath(truth, scores_path),
        "rules": cfg.rules,
        "workers": workers,
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    if empty_public is not None:
        body["empty_overall_score"] = empty_public["overall_score"]
    write_manifest(scores_path, new_manifest("scores", "evaluator", started, inputs=inputs, **body))
    log.info("per-class scores (%s):\n%s", sub_path, table(extended, set(instance_classes), empty=empty_public))
    log.info("wrote %s, %s and %s in %.1f s", result_path, ext_path, scores_path, time.perf_counter() - t0)
    return public
