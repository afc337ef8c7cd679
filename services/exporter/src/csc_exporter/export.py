"""torch -> ONNX, verified against onnxruntime, with test tensors and latency.

Takes a loaded ``model`` manifest and its verified checkpoint (see `stage`); writes beside the output
manifest ``model.onnx`` (self-contained, opset >= 17, dynamic batch and
spatial axes), ``test_input.npy`` + ``test_expected.npy`` (a real patch and
torch's logits for it: anyone can re-check the ONNX file) and last the
``onnx-model`` manifest. The ONNX output is per-class **logits**
(``"output": "logits"``); consumers apply the sigmoid.

Verification runs onnxruntime (CPU) and torch on a random patch, the trainer's
real sample patch, and a batch of 2 at a different valid spatial shape (to
prove the axes are dynamic); the largest absolute difference must stay within
the tolerance or nothing is written.
"""

import contextlib
import io
import logging
import os
import shutil
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from csc_common import nets, views
from csc_common.errors import InputError, StageFailed
from csc_common.fsutil import make_temp_dir
from csc_common.manifest import now
from csc_common.views import Artifact, Header, ModelView, OnnxModelView, ValidShape
from torch import nn

from csc_exporter.config import ExportConfig

log = logging.getLogger("csc.export")
INPUT_NAME = "raw"
OUTPUT_NAME = "logits"


def export_onnx(
    model: nn.Module,
    path: Path,
    *,
    patch: Sequence[int],
    multiple: Sequence[int],
    channels: int = 1,
    opset: int = 18,
    exporter: Literal["dynamo", "torchscript"] = "dynamo",
) -> None:
    """Write ``model`` as one self-contained ONNX file with dynamic batch and spatial axes.

    With the dynamo exporter each spatial axis is declared as ``multiple * k``
    (torch.export derived dims), so the graph itself states the valid-shape
    rule (e.g. input dims named ``4*z``); an axis with multiple 1 is plain.
    """
    example = torch.zeros((1, channels, *patch), dtype=torch.float32)
    names = ("z", "y", "x")
    with _quiet():
        if exporter == "dynamo":
            dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
            for axis, (name, m) in enumerate(zip(names, multiple, strict=True), start=2):
                dims[axis] = torch.export.Dim(name, min=1) if m == 1 else m * torch.export.Dim(name, min=1)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={"x": dims},
                external_data=False,
                verbose=False,
            )
        else:
            axes = {0: "batch", 2: "z", 3: "y", 4: "x"}
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=False,
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    got = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if got < 17:
        raise StageFailed(f"{path}: exported opset {got} < 17")


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporter's progress prints and warnings (they would flood the stage's log)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime CPU session (the predictor may pick CUDA; verification is on CPU)."""
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(x)).numpy()


def max_abs_diff(sess: ort.InferenceSession, model: nn.Module, x: np.ndarray) -> float:
    """Largest |onnxruntime - torch| over the logits of input ``x``."""
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    want = torch_logits(model, x)
    if got.shape != want.shape:
        raise StageFailed(f"onnxruntime output shape {got.shape} != torch output shape {want.shape}")
    return float(np.max(np.abs(got - want)))


def latency_ms(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    """Median and minimum wall time of ``fn`` over ``runs`` calls after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return {"median": round(statistics.median(times), 3), "min": round(min(times), 3)}


def export(
    cfg: ExportConfig,
    mm: ModelView,
    checkpoint: Path,
    real_x: np.ndarray | None,
    *,
    args: list[str] | None = None,
) -> OnnxModelView:
    """Export, verify, time and describe the model of manifest ``mm`` (``real_x``: its sample patch)."""
    started = now()
    out = Path(cfg.output).resolve()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model, arch = nets.load_model(checkpoint, dict(mm.architecture))
    patch, channels = list(mm.input.patch_shape), mm.input.channels
    multiple = nets.downsampling_multiple(arch)
    if any(p % m for p, m in zip(patch, multiple, strict=True)):
        raise InputError(f"{mm.where}: patch shape {patch} is not a multiple of the network's {list(multiple)}")
    rng = np.random.default_rng(cfg.seed)
    random_x = rng.random((1, channels, *patch), dtype=np.float32)
    dyn_shape = [p + (m if m > 1 else 2) for p, m in zip(patch, multiple, strict=True)]
    dyn_x = rng.random((2, channels, *dyn_shape), dtype=np.float32)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, ".export.")
    try:
        onnx_tmp = tmp / "model.onnx"
        t0 = time.perf_counter()
        export_onnx(
            model, onnx_tmp, patch=patch, multiple=multiple, channels=channels, opset=cfg.opset, exporter=cfg.exporter
        )
        export_s = time.perf_counter() - t0
        sess = session(onnx_tmp, cfg.threads)
        checks = {"random": max_abs_diff(sess, model, random_x), "dynamic_shape": max_abs_diff(sess, model, dyn_x)}
        if real_x is not None:
            checks["real"] = max_abs_diff(sess, model, real_x)
        worst = max(checks.values())
        if not worst <= cfg.tolerance:
            raise StageFailed(
                f"onnxruntime differs from torch by {worst:.3g} (> tolerance {cfg.tolerance:g}); per check: {checks}"
            )
        test_x = real_x if real_x is not None else random_x
        np.save(tmp / "test_input.npy", test_x)
        np.save(tmp / "test_expected.npy", torch_logits(model, test_x))
        lat: dict[str, Any] = {
            "shape": [1, channels, *patch],
            "runs": cfg.latency_runs,
            "torch": latency_ms(lambda: torch_logits(model, test_x), cfg.latency_runs),
            "onnxruntime": latency_ms(lambda: sess.run([OUTPUT_NAME], {INPUT_NAME: test_x}), cfg.latency_runs),
            "threads": cfg.threads or torch.get_num_threads(),
        }
        finals = {}
        for name in ("model.onnx", "test_input.npy", "test_expected.npy"):
            finals[name] = out.parent / name
            os.replace(tmp / name, finals[name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    view = OnnxModelView(
        header=Header.new("exporter", started, inputs=[mm.ref(out)], args=args),
        details={
            "exporter": cfg.exporter,
            "output": "logits",
            "layout": "NCZYX",
            "dims": arch["dims"],
            "latency_ms": lat,
            "export_seconds": round(export_s, 2),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        },
        name=mm.name,
        onnx=Artifact.of(finals["model.onnx"]),
        opset=cfg.opset,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        architecture=mm.architecture,
        input=mm.input,
        classes=mm.classes,
        class_kinds=mm.class_kinds,
        valid_shape=ValidShape(multiple, multiple),
        verification={
            "max_abs_diff": worst,
            "tolerance": cfg.tolerance,
            "checks": checks,
            "engine": "onnxruntime CPUExecutionProvider",
            "dynamic_shape": [2, channels, *dyn_shape],
        },
        test_input=Artifact.of(finals["test_input.npy"]),
        test_expected=Artifact.of(finals["test_expected.npy"]),
        test_source="trainer sample patch" if real_x is not None else "random",
    )
    written = views.save(view, out)
    log.info(
        "exported %s -> %s (opset %d, %s): max |onnxruntime - torch| %.2e (tolerance %g); latency for %s: "
        "torch %.1f ms, onnxruntime %.1f ms",
        mm.where,
        finals["model.onnx"],
        cfg.opset,
        cfg.exporter,
        worst,
        cfg.tolerance,
        "x".join(map(str, patch)),
        lat["torch"]["median"],
        lat["onnxruntime"]["median"],
    )
    return written
