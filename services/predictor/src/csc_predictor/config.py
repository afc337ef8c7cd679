"""Typed configuration of ``csc-predict`` (flags, or the same fields from ``--config FILE``)."""

import os
from dataclasses import dataclass, field
from typing import Literal

from csc_common.cli import parse_shape3, parse_vec3, refuse_ignored
from csc_common.errors import InputError
from csc_common.geometry import Box


@dataclass(frozen=True, kw_only=True)
class Config:
    """Predict per-class probabilities on the test crops (or a region) with an exported model.

    Reads an ``onnx-model`` and a ``dataset`` manifest; writes ``<output>.zarr`` (one array per
    crop and class) and the ``predictions`` manifest ``--output``. ``csc-predict finalize ...``
    (same flags) writes the manifest once every shard has finished.
    """

    model: str = field(metadata={"help": "onnx-model manifest (exporter output)"})
    dataset: str = field(metadata={"help": "dataset manifest (fetcher output)"})
    output: str = field(metadata={"help": "predictions manifest to write; arrays go to <output>.zarr"})
    crops: str = field(default="test", metadata={"help": "'test' (every crop of the test manifest) or ids '1,2'"})
    roi: str = field(
        default="",
        metadata={
            "help": "predict a world box instead of crops: 'z0,y0,x0:z1,y1,x1' in nm (needs one EM dataset or --volume)"
        },
    )
    whole_volume: bool = field(default=False, metadata={"help": "predict the whole EM volume of --volume"})
    volume: str = field(default="", metadata={"help": "dataset name for --roi/--whole-volume (default: the only one)"})
    engine: Literal["onnx", "torch"] = field(
        default="onnx",
        metadata={"help": "onnx: ONNX Runtime on the exported file; torch: the trainer's checkpoint in PyTorch eager"},
    )
    provider: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "auto: CUDA when onnxruntime-gpu and a GPU are present, else CPU"}
    )
    threads: int = field(
        default=0,
        metadata={
            "help": "intra-op threads (0: the cores given: CPU affinity, physical cores, cgroup CPU quota)",
            "min": 0,
        },
    )
    tile: str = field(default="", metadata={"help": "tile shape 'z,y,x' in voxels (default: the model's patch shape)"})
    overlap: float = field(
        default=0.25, metadata={"help": "fraction of a tile shared with its neighbour, [0, 1)", "min": 0.0, "lt": 1.0}
    )
    blend: Literal["gaussian", "linear", "constant"] = field(
        default="gaussian", metadata={"help": "weighting of overlapping tiles"}
    )
    batch_size: int = field(default=4, metadata={"help": "tiles per inference call", "min": 1})
    tta: bool = field(default=False, metadata={"help": "average over the 8 axis flips (8x the compute)"})
    context: str = field(
        default="",
        metadata={"help": "EM context read around each block, voxels 'z,y,x' or one int (default: a quarter tile)"},
    )
    block: str = field(
        default="128",
        metadata={
            "help": "block shape in voxels (one int or 'z,y,x'); memory is set by it; rounded up to whole chunks"
        },
    )
    chunk: str = field(default="64", metadata={"help": "output chunk shape in voxels (one int or 'z,y,x')"})
    dtype: Literal["uint8", "float16", "float32"] = field(
        default="uint8", metadata={"help": "stored probability dtype (uint8: p*255 rounded)"}
    )
    shard: str = field(
        default="",
        metadata={
            "help": "'I/N': do shard I of N (else JOB_COMPLETION_INDEX and CSC_PREDICT_SHARDS from the environment); "
            "run 'finalize' afterwards"
        },
    )
    voxel_tolerance: float = field(
        default=0.25,
        metadata={
            "help": "largest relative difference per axis between the model and the chosen EM level voxel size",
            "min": 0.0,
        },
    )

    def __post_init__(self) -> None:
        """Rules across fields and the syntax of every value, checked before any manifest is read."""
        if self.roi and self.whole_volume:
            raise InputError("--roi and --whole-volume exclude each other")
        if self.roi or self.whole_volume:
            refuse_ignored(self, ["crops"], "with --roi/--whole-volume (they predict a region, not test crops)")
        else:
            refuse_ignored(self, ["volume"], "without --roi or --whole-volume (each test crop names its dataset)")
        if not self.output.endswith(".json"):
            raise InputError(f"--output {self.output}: expected a .json manifest path (arrays go beside it, .zarr)")
        if self.roi:
            parse_roi(self.roi)
        parse_shard(self.shard)
        for flag, value, minimum in (("--tile", self.tile, 1), ("--context", self.context, 0)):
            if value:
                parse_shape3(value, flag, minimum=minimum)
        parse_shape3(self.block, "--block")
        parse_shape3(self.chunk, "--chunk")


def parse_roi(text: str) -> Box:
    """'z0,y0,x0:z1,y1,x1' (nm) -> Box."""
    a, sep, b = text.partition(":")
    if not sep:
        raise InputError(f"--roi: expected 'z0,y0,x0:z1,y1,x1' in nm, got {text!r}")
    start, stop = parse_vec3(a, "--roi start", positive=False), parse_vec3(b, "--roi stop", positive=False)
    if any(e <= s for s, e in zip(start, stop, strict=True)):
        raise InputError(f"--roi: expected 3 starts and 3 larger stops 'z0,y0,x0:z1,y1,x1', got {text!r}")
    return Box(start, stop)


def parse_shard(text: str, env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """'I/N', else JOB_COMPLETION_INDEX + CSC_PREDICT_SHARDS from the environment, else None (no sharding)."""
    env = dict(os.environ) if env is None else env
    if not text and "JOB_COMPLETION_INDEX" in env:
        if "CSC_PREDICT_SHARDS" not in env:
            raise InputError("JOB_COMPLETION_INDEX is set but CSC_PREDICT_SHARDS (the shard count) is not")
        text = f"{env['JOB_COMPLETION_INDEX']}/{env['CSC_PREDICT_SHARDS']}"
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard: expected 'I/N' (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard: need 0 <= I < N, got {text!r}")
    return i, n
