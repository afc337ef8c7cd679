"""``csc-train`` / ``csc train`` and ``csc make-datasplit``.

Reads a ``dataset`` manifest; ``csc-train`` writes a ``model`` manifest with
checkpoints, logs and plots beside it; ``csc make-datasplit`` writes the
original's datasplit.csv on its own. Inputs are validated before torch is
imported, so bad input fails fast with one line and exit code 2.
"""

import logging
from pathlib import Path

import numpy as np
from csc_common.cli import parse_config, run_main
from csc_common.fsutil import atomic_write_text
from csc_common.manifest import read_manifest

from csc_trainer.config import DatasplitConfig, TrainConfig, parse_list, parse_vec3

log = logging.getLogger("csc.train")


def main(argv: list[str] | None = None) -> int:
    return run_main("csc-train", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(TrainConfig, argv, "csc-train")
    cfg.check()
    ds = read_manifest(cfg.dataset, "dataset")
    from csc_trainer.io import check_classes, training_crop_entries

    check_classes(cfg, training_crop_entries(ds, crop_ids=cfg.crop_ids))
    from csc_trainer.train import run  # torch is imported here, after the input checks

    run(cfg, ds, args=argv)
    return 0


def datasplit_main(argv: list[str] | None = None) -> int:
    return run_main("csc make-datasplit", lambda: _datasplit_main(argv))


def _datasplit_main(argv: list[str] | None) -> int:
    from csc_common.errors import InputError

    from csc_trainer.datasplit import datasplit_csv, make_split

    cfg = parse_config(DatasplitConfig, argv, "csc make-datasplit")
    if not cfg.dataset:
        raise InputError("--dataset is required (a dataset manifest)")
    ds = read_manifest(cfg.dataset, "dataset")
    classes = parse_list(cfg.classes, "--classes")
    if not classes:
        raise InputError("--classes is empty")
    wanted_ds = set(parse_list(cfg.datasets, "--datasets"))
    wanted_crops = {int(c.removeprefix("crop")) for c in parse_list(cfg.crops, "--crops")}
    crops = [
        c
        for c in ds["crops"]
        if c["split"] == "train"
        and (not wanted_ds or c["dataset"] in wanted_ds)
        and (not wanted_crops or c["id"] in wanted_crops)
    ]
    if not 0.0 <= cfg.validate_ratio <= 1.0:
        raise InputError(f"--validate-ratio must be within [0, 1], got {cfg.validate_ratio}")
    rows = make_split(
        crops,
        classes,
        validate_ratio=cfg.validate_ratio,
        rng=np.random.default_rng(cfg.seed),
        force_all=cfg.force_all_classes,
        scale=parse_vec3(cfg.scale, "--scale") if cfg.scale else None,
    )
    if not rows:
        raise InputError(
            f"{ds.path}: no training crop annotates any of {', '.join(classes)}"
            + (" at the requested --scale" if cfg.scale else "")
        )
    out = Path(cfg.csv_path)
    atomic_write_text(out, datasplit_csv(rows, ds, out))
    n_val = sum(r.split == "validate" for r in rows)
    log.info("wrote %s: %d crops (%d train, %d validate)", out, len(rows), len(rows) - n_val, n_val)
    return 0
