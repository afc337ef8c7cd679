"""Shared network code: 2D/3D U-Nets, ``build_model`` and checkpoint helpers.

The only csc_common module that imports torch (install ``csc-common[torch]``).
Used by the trainer (builds and saves), the exporter (loads, exports ONNX) and
the predictor's ``--engine torch`` (loads, runs), so all three agree on what a
checkpoint holds.

**One tensor contract for every model**: input ``(N, C, Z, Y, X)`` float32,
output ``(N, K, Z, Y, X)`` per-class *logits* (apply a sigmoid for
probabilities), same spatial shape as the input ("same" padding). A 2D model
folds Z into the batch and runs slice by slice, so it takes any Z (a 2D patch
is ``(1, Y, X)``). Each spatial axis of the input must be a multiple of
:func:`downsampling_multiple` (``2 ** (depth - 1)`` in-plane, and along Z for
3D models).

An *architecture* is a plain JSON-able dict (it goes into the ``model``
manifest and into each checkpoint)::

    {"name": "unet", "dims": 3, "in_channels": 1, "out_channels": 6,
     "depth": 3, "base_features": 8, "norm": "batch"}

A *checkpoint* is a ``torch.save`` dict ``{"format": "csc-checkpoint/1",
"architecture": ..., "state_dict": ..., "optimizer": ..., "scheduler": ...,
"scaler": ..., "iteration": ..., "extra": ...}`` (the last five optional),
loaded with ``weights_only=True``.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from csc_common.errors import InputError

CHECKPOINT_FORMAT = "csc-checkpoint/1"
NORMS = ("batch", "instance", "group", "none")
DEFAULTS: dict[str, Any] = {
    "name": "unet",
    "dims": 3,
    "in_channels": 1,
    "out_channels": 1,
    "depth": 3,
    "base_features": 8,
    "norm": "batch",
}

__all__ = [
    "CHECKPOINT_FORMAT",
    "NORMS",
    "UNet",
    "build_model",
    "downsampling_multiple",
    "load_checkpoint",
    "load_model",
    "normalize_architecture",
    "save_checkpoint",
]


def normalize_architecture(architecture: dict[str, Any]) -> dict[str, Any]:
    """``architecture`` with defaults filled in and values checked (InputError otherwise)."""
    unknown = sorted(set(architecture) - set(DEFAULTS))
    if unknown:
        raise InputError(f"architecture: unknown field(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    arch = {**DEFAULTS, **architecture}
    if arch["name"] != "unet":
        raise InputError(f"architecture: name {arch['name']!r} is not supported; expected 'unet'")
    if arch["dims"] not in (2, 3):
        raise InputError(f"architecture: dims must be 2 or 3, got {arch['dims']!r}")
    for key in ("in_channels", "out_channels", "depth", "base_features"):
        if not isinstance(arch[key], int) or isinstance(arch[key], bool) or arch[key] < 1:
            raise InputError(f"architecture: {key} must be a positive integer, got {arch[key]!r}")
    if arch["depth"] > 6:
        raise InputError(f"architecture: depth must be at most 6, got {arch['depth']}")
    if arch["norm"] not in NORMS:
        raise InputError(f"architecture: norm must be one of {', '.join(NORMS)}, got {arch['norm']!r}")
    return arch


def downsampling_multiple(architecture: dict[str, Any]) -> tuple[int, int, int]:
    """zyx factor every input dimension must be a multiple of (valid-shape rule)."""
    arch = normalize_architecture(architecture)
    m = 2 ** (arch["depth"] - 1)
    return (1 if arch["dims"] == 2 else m, m, m)


def _norm(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class _ConvBlock(nn.Sequential):
    """Two (conv 3, norm, ReLU) layers with 'same' padding."""

    def __init__(self, dims: int, c_in: int, c_out: int, norm: str) -> None:
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        bias = norm == "none"
        super().__init__(
            conv(c_in, c_out, 3, padding=1, bias=bias),
            _norm(norm, dims, c_out),
            nn.ReLU(inplace=True),
            conv(c_out, c_out, 3, padding=1, bias=bias),
            _norm(norm, dims, c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """A plain U-Net (max-pool down, transposed-conv up, skip concatenation).

    Features double at each level: ``base_features * 2**level``. Takes and
    returns 5D tensors whatever ``dims`` is (see the module docstring).
    """

    def __init__(
        self, *, dims: int, in_channels: int, out_channels: int, depth: int, base_features: int, norm: str
    ) -> None:
        super().__init__()
        self.dims = dims
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        up = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        feats = [base_features * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        c = in_channels
        for f in feats:
            self.down.append(_ConvBlock(dims, c, f, norm))
            c = f
        self.pool = pool(2)
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for f in reversed(feats[:-1]):
            self.up.append(up(c, f, 2, stride=2))
            self.up_blocks.append(_ConvBlock(dims, 2 * f, f, norm))
            c = f
        self.head = conv(c, out_channels, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, block in zip(self.up, self.up_blocks, strict=True):
            x = up(x)
            x = block(torch.cat([skips.pop(), x], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 3:
            return self._forward(x)
        # 2D: (N, C, Z, Y, X) -> (N*Z, C, Y, X) -> run -> back to (N, K, Z, Y, X).
        n, c, z, y, xx = x.shape
        flat = x.permute(0, 2, 1, 3, 4).reshape(n * z, c, y, xx)
        out = self._forward(flat)
        k = out.shape[1]
        return out.reshape(n, z, k, y, xx).permute(0, 2, 1, 3, 4)


def build_model(architecture: dict[str, Any]) -> nn.Module:
    """A freshly initialised network for ``architecture`` (see the module docstring)."""
    arch = normalize_architecture(architecture)
    return UNet(
        dims=arch["dims"],
        in_channels=arch["in_channels"],
        out_channels=arch["out_channels"],
        depth=arch["depth"],
        base_features=arch["base_features"],
        norm=arch["norm"],
    )


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    architecture: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    iteration: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + rename); a killed run leaves the old one intact."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "architecture": normalize_architecture(architecture),
        "state_dict": model.state_dict(),
        "iteration": int(iteration),
        "extra": extra or {},
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; other containers' users must read it
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict on CPU; a missing, truncated or foreign file is an InputError naming it."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        lines = [ln.strip(" .") for ln in str(exc).splitlines() if ln.strip(" .")]
        msg = f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__
        raise InputError(f"{p}: corrupt or unreadable checkpoint ({msg})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{p}: not a csc checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    for key in ("architecture", "state_dict"):
        if key not in state:
            raise InputError(f"{p}: checkpoint lacks {key!r}")
    return state


def load_model(path: str | Path, architecture: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The network stored in a checkpoint, in eval mode on CPU, and its architecture.

    ``architecture`` (e.g. from the model manifest; fields other than the
    architecture's own are ignored) must match the checkpoint's when given, so
    a manifest cannot silently describe another net.
    """
    state = load_checkpoint(path)
    arch = normalize_architecture(state["architecture"])
    known = {k: v for k, v in (architecture or {}).items() if k in DEFAULTS}
    if architecture is not None and normalize_architecture(known) != arch:
        raise InputError(f"{path}: checkpoint architecture {arch} does not match the manifest's {architecture}")
    model = build_model(arch)
    try:
        model.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the architecture ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model, arch
