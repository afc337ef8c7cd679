"""``csc-process`` / ``csc process``: predictions.json -> processed.zarr + processed.json."""

from csc_common.cli import parse_config, run_main

from csc_postprocessor.config import Config
from csc_postprocessor.process import run

PROG = "csc-process"


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    run(parse_config(Config, argv, PROG))
    return 0
