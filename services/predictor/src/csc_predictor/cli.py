"""``csc-predict`` / ``csc predict``: per-class probabilities for the test crops from an exported model.

    csc-predict --model M/onnx-model.json --dataset D/dataset.json --output D/predictions.json
    csc-predict ... --shard 2/8            # one shard of a sharded run (or JOB_COMPLETION_INDEX)
    csc-predict finalize ...               # same flags: write the manifest once all shards are done

Exit codes: 0 ok, 1 failed / blocks missing (retryable), 2 bad input.
"""

from csc_common.cli import parse_config, run_main
from csc_common.errors import InputError
from csc_common.manifest import now, read_manifest

from csc_predictor.config import Config

PROG = "csc-predict"


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    finalizing = bool(args) and args[0] == "finalize"
    if finalizing:
        args = args[1:]
    cfg = parse_config(Config, args, PROG + (" finalize" if finalizing else ""))
    started = now()
    for name in ("model", "dataset", "output"):
        if not getattr(cfg, name):
            raise InputError(f"--{name} is required")
    if not cfg.output.endswith(".json"):
        raise InputError(f"--output {cfg.output}: expected a .json manifest path (arrays go beside it, .zarr)")
    # Validate inputs before any heavy import (onnxruntime / torch happen in the engine).
    from csc_predictor.engines import ModelSpec
    from csc_predictor.plan import build_plan, parse_shard

    spec = ModelSpec.from_manifest(read_manifest(cfg.model, "onnx-model"))
    ds = read_manifest(cfg.dataset, "dataset")
    parse_shard(cfg.shard)
    if cfg.engine == "onnx" and not spec.onnx_path.is_file():
        raise InputError(f"{spec.manifest.path}: /onnx/path: {spec.onnx_path} not found")
    plan = build_plan(cfg, spec, ds)

    from csc_predictor.predict import finalize, run

    if finalizing:
        finalize(cfg, spec, ds, plan)
    else:
        run(cfg, spec, ds, plan, started=started)
    return 0
