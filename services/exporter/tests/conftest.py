"""A ``model`` manifest with a small, randomly initialised U-Net (2D or 3D) and a sample patch.

The exporter only needs a checkpoint and its manifest; building them here
with csc_common.nets keeps the exporter's tests independent of the trainer.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from csc_common import nets
from csc_common.fsutil import atomic_write_text
from csc_common.manifest import artifact, new_manifest, now, write_manifest


def make_model(
    folder: Path,
    *,
    dims: int,
    classes=("mito", "nuc", "er"),
    depth: int = 3,
    norm: str = "batch",
    patch=None,
    seed: int = 0,
    class_kinds: dict[str, str] | None = None,
) -> Path:
    """Write checkpoint, sample_input.npy and model.json under ``folder``; returns the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    arch = nets.normalize_architecture(
        {"dims": dims, "out_channels": len(classes), "depth": depth, "base_features": 4, "norm": norm}
    )
    model = nets.build_model(arch)
    # Non-trivial BatchNorm running statistics, as after training.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 1, 16 if dims == 3 else 1, 16, 16))
    ck = nets.save_checkpoint(folder / "checkpoints" / "best.pt", model, arch, iteration=3)
    patch = patch or ([16, 16, 16] if dims == 3 else [1, 32, 32])
    sample = np.random.default_rng(seed).random((1, 1, *patch), dtype=np.float32)
    np.save(folder / "sample_input.npy", sample)
    out = folder / "model.json"
    m = 2 ** (depth - 1)
    body = {
        "name": folder.name,
        "architecture": {**arch, "parameters": sum(p.numel() for p in model.parameters())},
        "input": {
            "channels": 1,
            "patch_shape": patch,
            "voxel_size": [8.0, 8.0, 8.0],
            "normalization": {"scale": 1 / 255, "offset": 0.0},
        },
        "classes": list(classes),
        **({"class_kinds": class_kinds} if class_kinds else {}),
        "output": "logits",
        "valid_shape": {"multiple": [1 if dims == 2 else m, m, m], "min": [1 if dims == 2 else m, m, m]},
        "checkpoint": artifact(ck, out),
        "sample_input": artifact(folder / "sample_input.npy", out),
        "training": {"iterations": 3},
    }
    write_manifest(out, new_manifest("model", "trainer", now(), args=[], **body))
    return out


@pytest.fixture
def model_manifest(tmp_path):
    """Factory: ``model_manifest(dims=3)`` -> path of a fresh model manifest in tmp_path."""

    def make(**kw):
        return make_model(tmp_path / f"model{kw.get('dims', 3)}d", **kw)

    return make


__all__ = ["atomic_write_text", "make_model"]
