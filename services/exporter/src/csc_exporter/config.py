"""Typed config of ``csc-export`` (flags, or the same fields from a YAML/JSON file)."""

from dataclasses import dataclass, field
from typing import Any, Literal


def _h(text: str, **limits: float) -> dict[str, Any]:
    """Field metadata: the help text and the value's range (``min``, ``gt``)."""
    return {"help": text, **limits}


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Export a trained model to a verified, self-contained ONNX file; writes an onnx-model manifest."""

    model: str = field(metadata=_h("model manifest (trainer output), e.g. data/models/demo/model.json"))
    output: str = field(metadata=_h("onnx-model manifest to write; model.onnx and the test tensors go beside it"))
    opset: int = field(default=18, metadata=_h("ONNX opset (>= 17)", min=17))
    exporter: Literal["dynamo", "torchscript"] = field(
        default="dynamo",
        metadata=_h(
            "torch.onnx path: dynamo (torch.export, divisibility-constrained dynamic axes) or the legacy torchscript one"
        ),
    )
    tolerance: float = field(
        default=1e-4, metadata=_h("max abs difference allowed between onnxruntime and torch", gt=0)
    )
    latency_runs: int = field(default=10, metadata=_h("timed runs per engine for the latency figures", min=1))
    threads: int = field(default=0, metadata=_h("CPU threads for torch and onnxruntime (0 = library default)", min=0))
    seed: int = field(default=0, metadata=_h("seed of the random verification input"))
