"""``csc-predict`` / ``csc predict``: per-class probabilities for the test crops from an exported model.

    csc-predict --model M/onnx-model.json --dataset D/dataset.json --output D/predictions.json
    csc-predict ... --shard 2/8            # one shard of a sharded run (or JOB_COMPLETION_INDEX)
    csc-predict finalize ...               # same flags: write the manifest once all shards are done

Exit codes: 0 ok, 1 failed / blocks missing (retryable), 2 bad input.
"""

from csc_common.cli import parse_command, run_main

from csc_predictor.config import Config
from csc_predictor.predict import finalize, run

PROG = "csc-predict"
COMMANDS = {"finalize": "write the predictions manifest once every shard is done (same flags as the run)"}


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    command, cfg = parse_command(Config, argv, PROG, COMMANDS)
    if command == "finalize":
        finalize(cfg)
    else:
        run(cfg)
    return 0
