"""``csc-train`` / ``csc train``, ``csc make-datasplit`` and ``csc get-counts``.

Reads a ``dataset`` manifest; ``csc-train`` writes a ``model`` manifest with
checkpoints, logs and plots beside it; ``csc make-datasplit`` writes the
original's datasplit.csv on its own; ``csc get-counts`` prints how many crops
and voxels each class has. Inputs are validated before torch is
imported, so bad input fails fast with one line and exit code 2.
"""

from csc_common.cli import parse_config, run_main

from csc_trainer.config import CountsConfig, DatasplitConfig, TrainConfig


def main(argv: list[str] | None = None) -> int:
    return run_main("csc-train", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    from csc_trainer.stage import run

    run(parse_config(TrainConfig, argv, "csc-train"), args=argv)
    return 0


def datasplit_main(argv: list[str] | None = None) -> int:
    return run_main("csc make-datasplit", lambda: _datasplit_main(argv))


def _datasplit_main(argv: list[str] | None) -> int:
    from csc_trainer.datasplit import run

    run(parse_config(DatasplitConfig, argv, "csc make-datasplit"))
    return 0


def counts_main(argv: list[str] | None = None) -> int:
    return run_main("csc get-counts", lambda: _counts_main(argv))


def _counts_main(argv: list[str] | None) -> int:
    from csc_trainer.counts import run

    run(parse_config(CountsConfig, argv, "csc get-counts"))
    return 0
