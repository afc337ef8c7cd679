"""The exporter stage: ``run(cfg) -> OnnxModelView``.

A light module on purpose: it loads the model manifest, verifies the
checkpoint (present, sha256 as recorded) and reads the trainer's sample
patch, and only then imports ``export`` (torch, onnx, onnxruntime).
"""

import numpy as np
from csc_common.errors import InputError
from csc_common.views import ModelView, OnnxModelView, load

from csc_exporter.config import ExportConfig


def sample_input(mm: ModelView) -> np.ndarray | None:
    """The trainer's real sample patch ``(1, C, *patch)`` as float32, or None where the manifest has none."""
    if mm.sample_input is None:
        return None
    path = mm.sample_input.verify(mm.where)
    try:
        x = np.load(path).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the model's sample input ({exc})") from None
    want = (1, mm.input.channels, *mm.input.patch_shape)
    if x.shape != want:
        raise InputError(f"{path}: sample input shape {x.shape} != {want}")
    return x


def run(cfg: ExportConfig, *, args: list[str] | None = None) -> OnnxModelView:
    """Export, verify, time and describe the model of ``cfg.model``; returns the written manifest.

    ``args`` (the command line) is recorded in the manifest's producer block.
    """
    mm = load(cfg.model, ModelView)
    checkpoint = mm.checkpoint.verify(mm.where)
    real_x = sample_input(mm)
    from csc_exporter.export import export  # torch + onnxruntime, after the input checks

    return export(cfg, mm, checkpoint, real_x, args=args)
