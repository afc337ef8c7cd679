"""``csc-export`` / ``csc export``: model manifest -> verified ONNX file + onnx-model manifest.

The model manifest and its checkpoint (present, sha256 as recorded) are
checked before torch and onnxruntime are imported, so bad input fails fast
with one line and exit code 2.
"""

from pathlib import Path

from csc_common.cli import parse_config, run_main
from csc_common.errors import InputError
from csc_common.fsutil import sha256_file
from csc_common.manifest import read_manifest

from csc_exporter.config import ExportConfig


def main(argv: list[str] | None = None) -> int:
    return run_main("csc-export", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    cfg = parse_config(ExportConfig, argv, "csc-export")
    if not cfg.model:
        raise InputError("--model is required (a model manifest)")
    if not cfg.output:
        raise InputError("--output is required (the onnx-model manifest to write)")
    if cfg.opset < 17:
        raise InputError(f"--opset must be at least 17, got {cfg.opset}")
    if not cfg.tolerance > 0:
        raise InputError(f"--tolerance must be positive, got {cfg.tolerance}")
    mm = read_manifest(cfg.model, "model")
    ckpt: Path = mm.resolve(mm["checkpoint"]["path"])
    if not ckpt.is_file():
        raise InputError(f"{mm.path}: checkpoint {ckpt} not found")
    if sha256_file(ckpt) != mm["checkpoint"]["sha256"]:
        raise InputError(f"{ckpt}: sha256 does not match the model manifest (corrupt or replaced checkpoint)")
    from csc_exporter.export import run  # torch + onnxruntime, after the input checks

    run(cfg, mm, args=argv)
    return 0
