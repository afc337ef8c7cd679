"""GPU check for the predictor, for when a GPU machine is lent: CUDA provider vs CPU, same model and tiling.

Needs the ``gpu`` extra (``onnxruntime-gpu`` *instead of* ``onnxruntime``: both in one environment
shadow each other) and a CUDA device; torch only to build the bench model when ``--model`` is not given.

    python services/predictor/bench/gpu_check.py [--model onnx-model.json] [--size 192] [--volume 256]

Checks, in order (exit 2 at the first that fails, with one line saying why):
1. exactly one of onnxruntime / onnxruntime-gpu is installed, and it offers CUDAExecutionProvider;
2. a session asked for CUDA really runs on CUDA (``session.get_providers()``, not the request);
3. CUDA and CPU probabilities on the same region agree (max |dp| <= 1e-3);
4. ``csc-predict --whole-volume --provider cuda`` on a ``--volume``^3 volume records CUDAExecutionProvider
   in its manifest.
Both sessions are ``csc_predictor.engines.OnnxEngine``, so they carry the predictor's own session options
(``engines.session_options``: full graph optimisation, intra-op threads = the cores given, no inter-op
pool, sequential execution, memory arena + pattern), printed with the machine's CPU flags and the thread
counts. Rates are the median of ``--repeats`` timed runs after a warm-up.
Last line: ``gpu check: provider=<p> speedup=<x> cuda_vox_s=<n> cpu_vox_s=<n> max_abs_diff=<d> e2e_vox_s=<n>``.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def fail(msg: str) -> None:
    print(f"gpu check: FAIL: {msg}")
    raise SystemExit(2)


def installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def describe(engine: object) -> str:
    """The session options in force, as ORT reports them back (not as requested)."""
    opts = engine.session.get_session_options()  # type: ignore[attr-defined]
    return (
        f"intra-op {opts.intra_op_num_threads}, inter-op {opts.inter_op_num_threads}, "
        f"{opts.execution_mode.name}, {opts.graph_optimization_level.name}, "
        f"arena {opts.enable_cpu_mem_arena}, mem pattern {opts.enable_mem_pattern}"
    )


def timed_window(
    engine: object, raw: np.ndarray, tile: tuple[int, ...], n_classes: int, batch: int, repeats: int
) -> tuple[float, np.ndarray]:
    """(voxels/s from the median of ``repeats`` sliding windows over ``raw``, the probabilities); warm-up excluded."""
    from csc_predictor.tiling import sliding_window

    kw = dict(tile=tile, n_classes=n_classes, overlap=0.25, blend="gaussian", batch_size=batch)
    out = sliding_window(raw, engine, **kw)  # type: ignore[arg-type]
    secs = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = sliding_window(raw, engine, **kw)  # type: ignore[arg-type]
        secs.append(time.perf_counter() - t)
    return raw.size / float(np.median(secs)), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="an onnx-model manifest (default: build the bench U-Net, needs torch)")
    ap.add_argument("--size", type=int, default=192, help="edge of the region timed on both providers")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--volume", type=int, default=256, help="edge of the end-to-end whole-volume run (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per provider; rates from the median")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the cores given)")
    args = ap.parse_args()

    have_cpu, have_gpu = installed("onnxruntime"), installed("onnxruntime-gpu")
    if have_cpu and have_gpu:
        fail("both onnxruntime and onnxruntime-gpu are installed; uninstall onnxruntime (they share one module)")
    if not have_gpu:
        fail(
            "onnxruntime-gpu is not installed (pip install 'csc-predictor[gpu]' in an environment without onnxruntime)"
        )
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        fail(f"onnxruntime {ort.__version__} offers {ort.get_available_providers()}, no CUDAExecutionProvider")

    import bench_predict
    from csc_predictor.engines import ModelSpec, OnnxEngine

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        if args.model:
            onnx_json = Path(args.model)
        else:
            (work / "model").mkdir()
            onnx_json = bench_predict.build_model(
                work / "model",
                {
                    "name": "unet",
                    "dims": 3,
                    "in_channels": 1,
                    "out_channels": 3,
                    "depth": 3,
                    "base_features": 8,
                    "norm": "batch",
                },
                args.tile,
            )
        spec = ModelSpec.load(onnx_json)
        cuda = OnnxEngine(spec, provider="cuda", threads=args.threads)
        if cuda.provider != "CUDAExecutionProvider":
            fail(f"asked for CUDA, the session runs on {cuda.provider}")
        cpu = OnnxEngine(spec, provider="cpu", threads=args.threads)
        tile = tuple(int(v) for v in spec.patch_shape) if args.model else (args.tile,) * 3
        raw = np.random.default_rng(0).uniform(-1, 1, size=(args.size,) * 3).astype(np.float32)
        info = bench_predict.machine()
        print(
            f"machine: {info['cpu']}; cpu flags {info['cpu_flags']}; {info['cores_given']} cores given; "
            f"onnxruntime {info['onnxruntime']}; load average {info['load']}",
            file=sys.stderr,
        )
        rates, outs = {}, {}
        for name, eng in (("cuda", cuda), ("cpu", cpu)):
            rates[name], outs[name] = timed_window(eng, raw, tile, len(spec.classes), args.batch, args.repeats)
            print(
                f"{name}: {eng.provider}, {describe(eng)}: tile {list(tile)}, batch {args.batch}: "
                f"{rates[name] / 1e6:.2f} Mvox/s (median of {args.repeats})",
                file=sys.stderr,
            )
        diff = float(np.abs(outs["cuda"] - outs["cpu"]).max())
        if diff > 1e-3:
            fail(f"CUDA and CPU probabilities differ by up to {diff:.2e} (> 1e-3)")
        e2e = 0.0
        if args.volume and not args.model:
            ds = bench_predict.build_volume(work, args.volume)
            out = work / "pred.json"
            t = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "csc_predictor",
                    "-q",
                    "--model",
                    str(onnx_json),
                    "--dataset",
                    str(ds),
                    "--output",
                    str(out),
                    "--whole-volume",
                    "--provider",
                    "cuda",
                    "--batch-size",
                    str(args.batch),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                fail(f"csc-predict --provider cuda exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
            e2e = args.volume**3 / (time.perf_counter() - t)
            provider = json.loads(out.read_text())["provider"]
            if provider != "CUDAExecutionProvider":
                fail(f"the predictions manifest records provider {provider!r}")
    print(
        f"gpu check: provider=CUDAExecutionProvider speedup={rates['cuda'] / rates['cpu']:.2f} "
        f"cuda_vox_s={rates['cuda']:.0f} cpu_vox_s={rates['cpu']:.0f} max_abs_diff={diff:.2e} e2e_vox_s={e2e:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
