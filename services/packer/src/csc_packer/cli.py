"""``csc-pack`` / ``csc pack-results``: pack a submission zip, or ``--check`` any submission zip.

Pack:  ``csc-pack --processed DATA/processed.json --test-manifest CSV --output DATA/submission.json``
Check: ``csc-pack --check ZIP [--test-manifest CSV] [--strict]`` prints one line per finding on stdout
(ERROR: the evaluator would reject it or silently degrade it; MISSING: scored as missing; WARNING: fine
but worth knowing) and a summary; exits 2 on errors (and on missing rows with --strict).
"""

import logging
import sys
from pathlib import Path

from csc_common.cli import parse_config, run_main
from csc_common.errors import InputError, SubmissionError
from csc_common.manifest import read_manifest

from csc_packer.config import Config
from csc_packer.testmanifest import LoadedTestManifest, load_test_manifest

PROG = "csc-pack"
log = logging.getLogger("csc.pack")


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(Config, argv, PROG)
    if cfg.check:
        if not Path(cfg.check).exists():
            raise InputError(f"{cfg.check}: zip file not found")
        return check(cfg, load_test_manifest(cfg.test_manifest))
    if not cfg.processed:
        raise InputError("--processed is required (the postprocessor's processed.json), or use --check ZIP")
    if not cfg.output:
        raise InputError("--output is required (e.g. data/submission.json)")
    if Path(cfg.output).suffix != ".json":
        raise InputError(f"{cfg.output}: the output manifest must be a .json file")
    manifest = read_manifest(cfg.processed, "processed")
    test = load_test_manifest(cfg.test_manifest)
    from csc_packer.pack import run

    run(cfg, manifest, test)
    return 0


def check(cfg: Config, test: LoadedTestManifest) -> int:
    from csc_packer.check import check_zip

    report = check_zip(cfg.check, test.rows)
    for f in report.findings:
        print(f.line())
    print(report.summary())
    sys.stdout.flush()
    if not report.passed(strict=cfg.strict):
        why = f"{len(report.errors)} errors" if report.errors else f"{len(report.missing)} rows missing (--strict)"
        raise SubmissionError(f"{cfg.check}: check failed: {why}")
    return 0
