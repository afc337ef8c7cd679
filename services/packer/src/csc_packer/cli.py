"""``csc-pack`` / ``csc pack-results``: pack a submission zip, or ``--check`` any submission zip.

Pack:  ``csc-pack --processed DATA/processed.json --test-manifest CSV --output DATA/submission.json``
Check: ``csc-pack --check ZIP [--test-manifest CSV] [--strict]`` prints one line per finding on stdout
(ERROR: the evaluator would reject it or silently degrade it; MISSING: scored as missing; WARNING: fine
but worth knowing) and a summary; exits 2 on errors (and on missing rows with --strict).
"""

from csc_common.cli import parse_config, run_main

from csc_packer.check import run_check
from csc_packer.config import Config
from csc_packer.pack import run

PROG = "csc-pack"


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(Config, argv, PROG)
    if cfg.check:
        return run_check(cfg)
    run(cfg)
    return 0
