"""Inference engines: ONNX Runtime (default) and PyTorch eager on the trainer's checkpoint.

Both take a batch ``(N, C, Z, Y, X)`` float32 (already normalised) and return
per-class logits ``(N, K, Z, Y, X)``; the predictor applies the sigmoid. The
torch engine exists to prove the predictor contract holds for more than one
implementation and to benchmark ORT against eager PyTorch on the same weights.
Heavy imports (onnxruntime, torch) happen inside the constructors, after the
CLI has validated its input manifests.
"""

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from csc_common import views
from csc_common.classes import ClassKind
from csc_common.errors import InputError
from csc_common.fsutil import sha256_file
from csc_common.geometry import Shape3, Vec3
from csc_common.views import ModelView, OnnxModelView, ValidShape

log = logging.getLogger("csc.predict")

Provider = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class ModelSpec:
    """What the predictor needs from an ``onnx-model`` manifest (its typed view, ``manifest``), flattened."""

    manifest: OnnxModelView
    onnx_path: Path
    onnx_sha256: str | None
    input_name: str | None
    output_name: str | None
    channels: int
    patch_shape: Shape3
    voxel_size: Vec3
    scale: float
    offset: float
    classes: tuple[str, ...]
    class_kinds: Mapping[str, ClassKind]
    valid_shape: ValidShape

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        """The spec of the ``onnx-model`` manifest at ``path`` (validated; InputError naming the file otherwise)."""
        return cls.of(views.load(path, OnnxModelView))

    @classmethod
    def of(cls, m: OnnxModelView) -> "ModelSpec":
        return cls(
            manifest=m,
            onnx_path=m.onnx.path,
            onnx_sha256=m.onnx.sha256,
            input_name=m.input_name,
            output_name=m.output_name,
            channels=m.input.channels,
            patch_shape=m.input.patch_shape,
            voxel_size=m.input.voxel_size,
            scale=m.input.scale,
            offset=m.input.offset,
            classes=m.classes,
            class_kinds=m.class_kinds,
            valid_shape=m.valid_shape,
        )

    def check_tile(self, tile: Shape3) -> None:
        """InputError unless the model's valid-shape rule accepts ``tile``."""
        if not self.valid_shape.accepts(tile):
            raise InputError(
                f"{self.manifest.path}: tile shape {list(tile)} cannot be taken by the model: each axis must be "
                f">= {list(self.valid_shape.min)} and a multiple of {list(self.valid_shape.multiple)} (valid_shape)"
            )


def verify_onnx_file(spec: ModelSpec) -> None:
    """The ONNX file exists and matches the manifest's sha256 (InputError otherwise)."""
    if not spec.onnx_path.is_file():
        raise InputError(f"{spec.manifest.path}: /onnx/path: {spec.onnx_path} not found")
    digest = sha256_file(spec.onnx_path)
    if spec.onnx_sha256 is not None and digest != spec.onnx_sha256:
        raise InputError(
            f"{spec.onnx_path}: sha256 {digest[:12]}... does not match the manifest's {spec.onnx_sha256[:12]}... "
            f"({spec.manifest.path}); the file was changed or corrupted after export"
        )


class OnnxEngine:
    """ONNX Runtime session; CUDA provider when asked/available, CPU otherwise."""

    name = "onnx"

    def __init__(self, spec: ModelSpec, *, provider: Provider = "auto", threads: int = 0) -> None:
        import onnxruntime as ort

        verify_onnx_file(spec)
        if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
            log.warning(
                "both onnxruntime and onnxruntime-gpu are installed; they shadow each other "
                "(uninstall onnxruntime to use the GPU package)"
            )
        available = ort.get_available_providers()
        if provider == "cuda" and "CUDAExecutionProvider" not in available:
            raise InputError(
                f"--provider cuda: onnxruntime offers only {', '.join(available)} "
                "(install the 'gpu' extra, onnxruntime-gpu, in place of onnxruntime)"
            )
        wanted = ["CPUExecutionProvider"]
        if provider in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            wanted.insert(0, "CUDAExecutionProvider")
        intra = resolve_threads(threads)
        try:
            self.session = ort.InferenceSession(
                str(spec.onnx_path), sess_options=session_options(intra), providers=wanted
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
            raise InputError(f"{spec.onnx_path}: not a loadable ONNX model ({_first_line(exc)})") from None
        inputs = self.session.get_inputs()
        self.input_name = spec.input_name or inputs[0].name
        self.output_name = spec.output_name or self.session.get_outputs()[0].name
        if self.input_name not in {i.name for i in inputs}:
            raise InputError(
                f"{spec.manifest.path}: /input_name: {self.input_name!r} is not an input of the ONNX "
                f"graph ({', '.join(i.name for i in inputs)})"
            )
        self.provider = self.session.get_providers()[0]
        if provider == "cuda" and self.provider != "CUDAExecutionProvider":
            raise InputError(f"--provider cuda: the session fell back to {self.provider} (no usable GPU)")
        self.threads = {"intra_op": intra, "inter_op": 1, "requested_intra_op": int(threads)}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def session_options(intra_op_threads: int) -> Any:
    """The ``SessionOptions`` of every predictor session, CPU or CUDA (``bench/gpu_check.py`` runs these too).

    Measured on the bench U-Net (issue 20): ``session.run`` is ~97 % of ``sliding_window`` and
    its time is the Conv nodes, so what matters is that Conv, BatchNorm and ReLU are fused
    (``ORT_ENABLE_ALL``; it also adds the NCHWc layout for 2D nets) and that the pool has
    exactly the cores given: one intra-op thread per core, no inter-op pool (a U-Net is a
    chain, nothing runs in parallel branches), sequential execution. The memory arena and
    pattern planner stay on: a run repeats one batch shape, so buffers are reused, not
    reallocated. IO binding with a preallocated output measured no gain on CPU (no change
    beyond noise), and thread spinning on or off the same CPU time, so both stay ORT's default.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(intra_op_threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = True
    opts.enable_mem_pattern = True
    opts.log_severity_level = 4  # the predictor reports failures itself, in one line
    return opts


class TorchEngine:
    """The trainer's checkpoint run through ``csc_common.nets`` in PyTorch eager mode (CPU or CUDA)."""

    name = "torch"

    def __init__(self, spec: ModelSpec, *, provider: Provider = "auto", threads: int = 0) -> None:
        model_path = spec.manifest.model_manifest
        if model_path is None:
            raise InputError(
                f"{spec.manifest.path}: --engine torch needs the model manifest this export came from "
                "(an input of kind 'model')"
            )
        self.model, self.device = load_torch_model(model_path, provider=provider, threads=threads)
        import torch

        self._torch = torch
        self.provider = "torch-cuda" if self.device.type == "cuda" else "torch-cpu"
        self.threads = {"intra_op": torch.get_num_threads(), "inter_op": 1, "requested_intra_op": int(threads)}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()


def load_torch_model(model_manifest: Path, *, provider: Provider = "auto", threads: int = 0) -> tuple[Any, Any]:
    """(module in eval mode, device) from a trainer ``model`` manifest, checkpoint sha256 checked."""
    import torch
    from csc_common import nets

    m = views.load(model_manifest, ModelView)
    ckpt = m.checkpoint.verify(f"{m.path}: /checkpoint/path")
    torch.set_num_threads(resolve_threads(threads))
    model, _ = nets.load_model(ckpt, dict(m.architecture))
    use_cuda = provider in ("auto", "cuda") and torch.cuda.is_available()
    if provider == "cuda" and not use_cuda:
        raise InputError("--provider cuda: torch sees no CUDA device")
    device = torch.device("cuda" if use_cuda else "cpu")
    return model.to(device), device


def make_engine(spec: ModelSpec, *, engine: str, provider: Provider, threads: int) -> "OnnxEngine | TorchEngine":
    if engine == "torch":
        return TorchEngine(spec, provider=provider, threads=threads)
    return OnnxEngine(spec, provider=provider, threads=threads)


def probe(engine: "OnnxEngine | TorchEngine", spec: ModelSpec, tile: Shape3) -> None:
    """Run one zero tile: the model must take ``tile`` and return ``(1, K, *tile)`` logits."""
    x = np.zeros((1, spec.channels, *tile), np.float32)
    try:
        y = np.asarray(engine(x))
    except Exception as exc:  # noqa: BLE001 - any runtime failure here means the tile does not fit the model
        raise InputError(
            f"{spec.manifest.path}: the model cannot take tile shape {list(tile)} ({_first_line(exc)})"
        ) from None
    want = (1, len(spec.classes), *tile)
    if y.shape != want:
        raise InputError(
            f"{spec.manifest.path}: model output shape {list(y.shape)} for tile {list(tile)}; "
            f"expected {list(want)} (one logit channel per class, same spatial shape)"
        )


def resolve_threads(threads: int) -> int:
    """Intra-op threads for ``--threads``: the number asked for, or (0) the cores given to this process."""
    return int(threads) if threads > 0 else cores_given()


def cores_given() -> int:
    """Cores this process may use: its CPU affinity, at most the physical cores, capped by a cgroup CPU quota.

    ORT's and torch's own defaults honour the affinity mask but not a quota, so a container limited to
    2 CPUs (``docker --cpus``, a k8s limit) on a 64-core node would run 32-64 threads and be throttled.
    Both engines get this same count, so their benchmark comparison is like for like.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    try:
        import psutil

        n = min(n, int(psutil.cpu_count(logical=False) or n))  # hyperthread siblings add little to a conv
    except ImportError:  # pragma: no cover
        pass
    quota = cgroup_cpu_quota()
    return max(1, min(n, quota) if quota else n)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs this cgroup's quota allows, rounded up (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``); None: no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        q, per = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return max(1, math.ceil(q / per)) if q > 0 and per > 0 else None


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]
