"""csc-evaluate / ``csc evaluate``: score a submission by the challenge's rules.

Reads a submission (zip, folder with one zip, or zarr folder), the ground-truth
zarr and the test crop manifest; writes RESULT.json (the official public
result), RESULT_extended.json (per-crop counts and statuses) and a ``scores``
manifest (default ``scores.json`` beside RESULT), and prints a per-class table
on stderr (`csc_evaluator.evaluate.run`). Exit codes: 0 ok, 1 failed, 2 bad
input (hostile zip, bad geometry, missing files).

``csc-batch-eval`` / ``csc batch-eval`` scores the rows of a CSV
(`csc_evaluator.batch`); its exit code is the number of rows that failed.
"""

from csc_common.cli import parse_config, run_main

from csc_evaluator.batch import BatchConfig
from csc_evaluator.config import Config
from csc_evaluator.evaluate import run

PROG = "csc-evaluate"
BATCH_PROG = "csc batch-eval"


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    run(parse_config(Config, argv, PROG))
    return 0


def batch_main(argv: list[str] | None = None) -> int:
    return run_main(BATCH_PROG, lambda: _batch_main(argv))


def _batch_main(argv: list[str] | None) -> int:
    from csc_evaluator.batch import run as run_batch

    report = run_batch(parse_config(BatchConfig, argv, BATCH_PROG))
    return report.exit_code if report is not None else 0
