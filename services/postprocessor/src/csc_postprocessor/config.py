"""Configuration of csc-process (flags, or the same fields in a --config YAML/JSON file)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from csc_common.cli import refuse_ignored
from csc_common.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Config:
    """Threshold, label and split per-class probabilities into the masks and instance ids a submission needs."""

    predictions: str = field(metadata={"help": "predictions manifest (the predictor's predictions.json) to read"})
    output: str = field(
        metadata={"help": "processed manifest to write (e.g. data/processed.json); the volumes go to processed.zarr"}
    )
    # A path on the command line; in a --config file also the steps mapping itself.
    steps: str | dict[str, Any] | None = field(
        default=None,
        metadata={
            "type": str,
            "help": "steps file (YAML/JSON: defaults.<kind>, classes.<name> -> list of {op: ...}); in a --config "
            "file this may also be the mapping itself. Default: semantic threshold 0.5, instance threshold 0.5 "
            "+ 26-connected components",
        },
    )
    process_file: str = field(
        default="",
        metadata={
            "help": "python file defining process_func(array, *, class_name, geometry) -> mask or ids "
            "(returning None falls back to the steps)"
        },
    )
    blockwise: Literal["auto", "always", "never"] = field(
        default="auto",
        metadata={
            "help": "auto: volumes up to --max-whole-voxels (every test crop) are processed whole, "
            "larger ones in blocks; always/never force it"
        },
    )
    block_size: int = field(default=256, metadata={"help": "block side in voxels for blockwise processing", "min": 8})
    max_whole_voxels: int = field(
        default=600**3, metadata={"help": "largest volume (voxels) processed whole in auto mode", "min": 0}
    )
    halo: int = field(
        default=16, metadata={"help": "voxels of context around each block given to process_func", "min": 0}
    )

    def __post_init__(self) -> None:
        if Path(self.output).suffix != ".json":
            raise InputError(f"--output {self.output}: the output manifest must be a .json file")
        if not self.process_file:
            refuse_ignored(self, ["halo"], "without --process-file (only process_func gets the context)")
        if self.blockwise == "never":
            refuse_ignored(self, ["block_size"], "with --blockwise never")
        if self.blockwise != "auto":
            refuse_ignored(self, ["max_whole_voxels"], f"with --blockwise {self.blockwise} (it decides auto mode)")
