"""``csc-export`` / ``csc export``: model manifest -> verified ONNX file + onnx-model manifest.

The model manifest, its checkpoint (present, sha256 as recorded) and its
sample input are checked before torch and onnxruntime are imported (see
`stage`), so bad input fails fast with one line and exit code 2.
"""

from csc_common.cli import parse_config, run_main

from csc_exporter.config import ExportConfig


def main(argv: list[str] | None = None) -> int:
    return run_main("csc-export", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    from csc_exporter.stage import run

    run(parse_config(ExportConfig, argv, "csc-export"), args=argv)
    return 0
