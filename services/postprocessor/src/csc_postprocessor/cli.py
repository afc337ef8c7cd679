"""``csc-process`` / ``csc process``: predictions.json -> processed.zarr + processed.json."""

from pathlib import Path

from csc_common.cli import parse_config, run_main
from csc_common.errors import InputError
from csc_common.manifest import read_manifest

from csc_postprocessor.config import Config

PROG = "csc-process"


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(Config, argv, PROG)
    if not cfg.predictions:
        raise InputError("--predictions is required (the predictor's predictions.json)")
    if not cfg.output:
        raise InputError("--output is required (e.g. data/processed.json)")
    if cfg.block_size < 8:
        raise InputError(f"--block-size must be at least 8 voxels, got {cfg.block_size}")
    if cfg.halo < 0:
        raise InputError(f"--halo must be >= 0, got {cfg.halo}")
    if Path(cfg.output).suffix != ".json":
        raise InputError(f"{cfg.output}: the output manifest must be a .json file")
    manifest = read_manifest(cfg.predictions, "predictions")
    from csc_postprocessor.process import run

    run(cfg, manifest)
    return 0
