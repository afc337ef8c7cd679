"""Predictor benchmark (``make bench-predict``): ORT CPU vs PyTorch eager vs a bare session, and peak RSS.

1. Speed: one U-Net (``csc_common.nets`` defaults: depth 3, 8 base features, batch norm; 3 classes) with
   fixed random weights, exported to ONNX; the same region (``--speed-size``^3 voxels), the same sliding
   window (tile, overlap, blending, batch) through ``csc_predictor.tiling.sliding_window``, timed for the
   ONNX Runtime CPU engine and for PyTorch eager on the same weights and thread count, and ``bare``: the same
   ONNX session run on the same tile batches back to back, nothing else (``efficiency = ort / bare`` is the
   share of the stage's time spent in the model). The three are interleaved, their order rotated every
   repetition, warm-up excluded; rates are from the median time of ``--repeats``, so load from other
   processes hits all three alike. ``speedup_1t_cpu`` is the model call alone (same batch, ORT session vs
   torch forward) on one thread in CPU seconds of the calling thread: the kernels' ratio, which load barely
   moves, against which the multi-thread wall-clock ``speedup`` can be read.
2. Memory: ``csc-predict --whole-volume`` as a child process on synthetic 256^3 and 512^3 EM volumes with
   the same model and block size; peak RSS of each child's process tree, sampled with psutil (``wait4``'s
   ``ru_maxrss`` would include this bench process's own peak, see ``tree_peak_rss``). Flat (set by the
   block size, not the volume) is the target.

The thread counts, CPU flags, library versions and load average are printed too, so figures from two
machines can be compared. Last line: ``bench predict: speedup=<x> ort_vox_s=<n> torch_vox_s=<n>
bare_vox_s=<n> efficiency=<x> speedup_1t_cpu=<x> threads=<n> cpu_flags=<a,b,..> load=<x>
rss_256_mib=<n> rss_512_mib=<n>``.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from csc_common.crops import write_crop_manifest
from csc_common.geometry import Geometry
from csc_common.manifest import artifact, new_manifest, now, write_manifest
from csc_common.volumes import create_array, multiscale_attrs, open_group

CLASSES = ["mito", "er", "nuc"]
VOXEL = (8.0, 8.0, 8.0)


def build_model(folder: Path, arch: dict, tile: int) -> Path:
    """Checkpoint, model manifest, ONNX file and onnx-model manifest for ``arch`` (fixed random weights)."""
    import torch
    from csc_common import nets

    torch.manual_seed(0)
    net = nets.build_model(arch).eval()
    started = now()
    ckpt = nets.save_checkpoint(folder / "checkpoint.pt", net, arch)
    spec = {
        "channels": 1,
        "patch_shape": [tile] * 3,
        "voxel_size": list(VOXEL),
        "normalization": {"scale": 2 / 255, "offset": -1.0},
    }
    model_json = folder / "model.json"
    write_manifest(
        model_json,
        new_manifest(
            "model",
            "trainer",
            started,
            args=[],
            name="bench",
            architecture=nets.normalize_architecture(arch),
            input=spec,
            classes=CLASSES,
            checkpoint=artifact(ckpt, model_json),
        ),
    )
    dyn = {0: "n", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 1, tile, tile, tile),),
            str(folder / "model.onnx"),
            input_names=["raw"],
            output_names=["logits"],
            dynamic_axes={"raw": dyn, "logits": dyn},
            opset_version=18,
            dynamo=False,
        )
    onnx_json = folder / "onnx-model.json"
    ref = artifact(model_json, onnx_json)
    write_manifest(
        onnx_json,
        new_manifest(
            "onnx-model",
            "exporter",
            started,
            args=[],
            inputs=[{"kind": "model", "path": ref["path"], "sha256": ref["sha256"]}],
            onnx=artifact(folder / "model.onnx", onnx_json),
            opset=18,
            input_name="raw",
            output_name="logits",
            input=spec,
            classes=CLASSES,
            valid_shape={
                "multiple": list(nets.downsampling_multiple(arch)),
                "min": list(nets.downsampling_multiple(arch)),
            },
            verification={"max_abs_diff": 0.0, "tolerance": 1e-4},
            model={"path": ref["path"]},
        ),
    )
    return onnx_json


def build_volume(folder: Path, size: int) -> Path:
    """A size^3 uint8 EM volume (written slab by slab) and a dataset manifest pointing at it."""
    name = f"vol{size}"
    zpath = folder / name / f"{name}.zarr"
    grp = open_group(zpath, mode="w").require_group("recon-1/em/fibsem-uint8")
    geom = Geometry(VOXEL, (0.0, 0.0, 0.0), (size, size, size))
    arr = create_array(grp, "s0", shape=geom.shape, dtype="uint8", chunks=(64, 64, 64))
    rng = np.random.default_rng(size)
    for z in range(0, size, 64):
        arr[z : z + 64] = rng.integers(60, 200, size=(min(64, size - z), size, size), dtype=np.uint8)
    grp.attrs.update(multiscale_attrs([("s0", geom)]))
    (folder / f"{name}.csv").write_text(write_crop_manifest([]))
    ds = folder / f"{name}.json"
    write_manifest(
        ds,
        new_manifest(
            "dataset",
            "fetcher",
            now(),
            args=[],
            source="bench",
            test_manifest=f"{name}.csv",
            crops=[],
            datasets=[
                {
                    "name": name,
                    "zarr": f"{name}/{name}.zarr",
                    "em": {"path": "recon-1/em/fibsem-uint8", "levels": [{"path": "s0", **geom.to_json()}]},
                }
            ],
        ),
    )
    return ds


# CPU features that decide which conv / GEMM kernels the two runtimes can pick.
CPU_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def machine() -> dict[str, str]:
    """CPU model, the relevant CPU flags (from /proc/cpuinfo), cores given, runtime versions, load average."""
    import onnxruntime
    from csc_predictor.engines import cores_given

    info = {"cpu": "unknown", "cpu_flags": "unknown"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["cpu"] == "unknown":
            info["cpu"] = value.strip()
        if key.strip() == "flags" and info["cpu_flags"] == "unknown":
            have = set(value.split())
            info["cpu_flags"] = ",".join(f for f in CPU_FLAGS if f in have) or "none"
    info["cores_given"] = str(cores_given())
    info["cpus"] = str(os.cpu_count())
    info["onnxruntime"] = onnxruntime.__version__
    info["numpy"] = np.__version__
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = "-"
    info["load"] = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "-"
    return info


def tile_batches(raw: np.ndarray, tile: int, overlap: float, batch: int) -> list[np.ndarray]:
    """The batches ``sliding_window`` feeds the model for ``raw``, prebuilt (for the bare session)."""
    from csc_predictor.tiling import tile_grid

    starts = list(tile_grid(raw.shape, (tile,) * 3, overlap=overlap))
    return [
        np.stack([raw[z : z + tile, y : y + tile, x : x + tile] for z, y, x in starts[b : b + batch]])[:, None]
        for b in range(0, len(starts), batch)
    ]


class Timed:
    """An engine wrapper that adds up the seconds spent inside the model call."""

    def __init__(self, engine: object) -> None:
        self.engine, self.seconds = engine, 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        try:
            return self.engine(batch)  # type: ignore[operator]
        finally:
            self.seconds += time.perf_counter() - t


def speed(
    onnx_json: Path, *, size: int, tile: int, overlap: float, batch: int, threads: int, repeats: int
) -> dict[str, float]:
    """Voxels/s of the ORT stage, the torch stage and the bare ORT session, interleaved; and the 1-thread ratio."""
    import torch
    from csc_predictor.engines import ModelSpec, OnnxEngine, TorchEngine
    from csc_predictor.tiling import sliding_window

    spec = ModelSpec.load(onnx_json)
    raw = np.random.default_rng(0).uniform(-1, 1, size=(size, size, size)).astype(np.float32)
    ort_eng = OnnxEngine(spec, provider="cpu", threads=threads)
    torch_eng = TorchEngine(spec, provider="cpu", threads=threads)
    batches = tile_batches(raw, tile, overlap, batch)
    kw = dict(tile=(tile,) * 3, n_classes=len(CLASSES), overlap=overlap, blend="gaussian", batch_size=batch)
    out: dict[str, np.ndarray] = {}
    timed = Timed(ort_eng)

    def bare() -> None:
        for b in batches:
            ort_eng(b)

    runs = {
        "onnx": lambda: out.__setitem__("onnx", sliding_window(raw, timed, **kw)),
        "torch": lambda: out.__setitem__("torch", sliding_window(raw, torch_eng, **kw)),
        "bare": bare,
    }
    for run in runs.values():  # warm-up: every batch shape, arenas and memory patterns in place
        run()
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    in_run: list[float] = []  # share of each ORT stage repetition spent inside session.run
    for r in range(repeats):  # interleaved and rotated, so load from other processes hits all three alike
        for name in names[r % 3 :] + names[: r % 3]:
            timed.seconds = 0.0
            t = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t)
            if name == "onnx":
                in_run.append(timed.seconds / times[name][-1])
    med = {n: float(np.median(v)) for n, v in times.items()}
    rates = {n: raw.size / secs for n, secs in med.items()}
    tile_vox = sum(b.size for b in batches)
    for name, eng in (("onnx", ort_eng), ("torch", torch_eng), ("bare", ort_eng)):
        print(
            f"speed {name:5s} ({eng.provider}, {eng.threads['intra_op']} intra-op / {eng.threads['inter_op']} "
            f"inter-op threads): {size}^3 voxels, {len(batches)} batches of {batch} tiles {tile}^3, overlap "
            f"{overlap}: median of {repeats} {med[name]:.2f} s (min {min(times[name]):.2f}, max "
            f"{max(times[name]):.2f}), {rates[name] / 1e6:.3f} Mvox/s",
            file=sys.stderr,
        )
    ratios = [t / o for t, o in zip(times["torch"], times["onnx"], strict=True)]
    effs = [b / o for b, o in zip(times["bare"], times["onnx"], strict=True)]
    print(
        f"speed: per-repetition torch/onnx {min(ratios):.2f}..{max(ratios):.2f}, bare/onnx {min(effs):.2f}.."
        f"{max(effs):.2f}; bare session {tile_vox / med['bare'] / 1e6:.3f} Mvox/s of tile voxels "
        f"({tile_vox / raw.size:.2f} tile voxels per region voxel)",
        file=sys.stderr,
    )
    share = float(np.median(in_run))
    print(
        f"profile onnx stage: session.run {100 * share:.1f} % of its time, the rest (gather tiles, sigmoid, "
        f"weight, accumulate, normalise) {100 * (1 - share):.1f} % (median per repetition)",
        file=sys.stderr,
    )
    diff = float(np.abs(out["onnx"] - out["torch"]).max())
    print(f"speed: max |p_ort - p_torch| = {diff:.2e}", file=sys.stderr)

    # The kernels alone on one thread, in CPU time of this thread: what the runtimes' code costs, load aside.
    one_ort = OnnxEngine(spec, provider="cpu", threads=1)
    one_torch = TorchEngine(spec, provider="cpu", threads=1)  # sets torch's (process-wide) pool to 1
    try:
        x = batches[0]
        cpu: dict[str, list[float]] = {"onnx": [], "torch": []}
        for eng in (one_ort, one_torch):
            eng(x)
        for _ in range(repeats):
            for name, eng in (("onnx", one_ort), ("torch", one_torch)):
                c = time.thread_time()
                eng(x)
                cpu[name].append(time.thread_time() - c)
    finally:
        torch.set_num_threads(torch_eng.threads["intra_op"])
    cpu_med = {n: float(np.median(v)) for n, v in cpu.items()}
    print(
        f"speed 1 thread, model call only ({x.shape[0]} tiles {tile}^3), CPU s of the calling thread: onnx "
        f"{cpu_med['onnx']:.3f}, torch {cpu_med['torch']:.3f} (median of {repeats})",
        file=sys.stderr,
    )
    return {
        "ort": rates["onnx"],
        "torch": rates["torch"],
        "bare": rates["bare"],
        "speedup_1t_cpu": cpu_med["torch"] / cpu_med["onnx"],
        "threads": float(ort_eng.threads["intra_op"]),
        "in_run": share,
    }


def peak_rss(onnx_json: Path, dataset: Path, out: Path, *, tile: int, block: int, threads: int) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of a whole-volume csc-predict child process."""
    argv = [
        sys.executable,
        "-m",
        "csc_predictor",
        "-q",
        "--model",
        str(onnx_json),
        "--dataset",
        str(dataset),
        "--output",
        str(out),
        "--whole-volume",
        "--tile",
        f"{tile}",
        "--block",
        str(block),
        "--threads",
        str(threads),
    ]
    t = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(argv, stderr=err, text=True)
        peak = tree_peak_rss(proc)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"bench predict: csc-predict failed ({proc.returncode}): {err.read().strip()[-400:]}")
    return peak / 2**20, time.perf_counter() - t


def tree_peak_rss(proc: subprocess.Popen, interval: float = 0.05) -> int:
    """Peak RSS (bytes) of ``proc`` and its children, sampled with psutil until it exits.

    Not ``wait4``'s ``ru_maxrss``: Linux keeps the largest RSS a process had across ``exec``, and
    ``subprocess`` starts a child with vfork, so a child's ``ru_maxrss`` is at least this bench
    process's own peak (a ``python -c pass`` spawned from an 800 MiB parent reports 825 MiB). The
    sampling misses nothing that matters: a block's arrays live for seconds.
    """
    import psutil

    peak = 0
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = ps.memory_info().rss
            for child in ps.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += child.memory_info().rss
            peak = max(peak, rss)
            time.sleep(interval)
    except psutil.NoSuchProcess:  # exited between poll() and the sample
        pass
    proc.wait()
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--speed-size", type=int, default=112, help="edge of the region timed for both engines")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repetitions; rates from the median")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads of both engines (0: the cores given)")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--sizes", default="256,512", help="volume edges for the peak-RSS runs")
    ap.add_argument("--quick", action="store_true", help="a small net (depth 2, 4 features) for a fast smoke run")
    ap.add_argument("--keep", help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()
    arch = {
        "name": "unet",
        "dims": 3,
        "in_channels": 1,
        "out_channels": len(CLASSES),
        "depth": 3,
        "base_features": 8,
        "norm": "batch",
    }
    if args.quick:
        arch.update(depth=2, base_features=4)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "model").mkdir(exist_ok=True)
        onnx_json = build_model(work / "model", arch, args.tile)
        info = machine()
        print(
            f"machine: {info['cpu']}; cpu flags {info['cpu_flags']}; {info['cores_given']} cores given of "
            f"{info['cpus']}; onnxruntime {info['onnxruntime']}, torch {info['torch']}, numpy {info['numpy']}; "
            f"load average {info['load']}",
            file=sys.stderr,
        )
        sp = speed(
            onnx_json,
            size=args.speed_size,
            tile=args.tile,
            overlap=args.overlap,
            batch=args.batch,
            threads=args.threads,
            repeats=args.repeats,
        )
        rss = {}
        for size in (int(s) for s in args.sizes.split(",")):
            ds = build_volume(work, size)
            mib, secs = peak_rss(
                onnx_json, ds, work / f"pred{size}.json", tile=args.tile, block=args.block, threads=args.threads
            )
            vox = size**3
            rss[size] = mib
            print(
                f"rss: whole volume {size}^3 ({vox / 1e6:.0f} Mvox), block {args.block}: peak RSS {mib:.0f} MiB, "
                f"{secs:.0f} s ({vox / secs / 1e6:.2f} Mvox/s end to end)",
                file=sys.stderr,
            )
            meta = json.loads((work / f"pred{size}.json").read_text())
            print(f"rss: manifest provider {meta['provider']}, blocks {meta['counts']['blocks']}", file=sys.stderr)
    parts = [
        f"speedup={sp['ort'] / sp['torch']:.2f}",
        f"ort_vox_s={sp['ort']:.0f}",
        f"torch_vox_s={sp['torch']:.0f}",
        f"bare_vox_s={sp['bare']:.0f}",
        f"efficiency={sp['ort'] / sp['bare']:.2f}",
        f"in_run={sp['in_run']:.2f}",
        f"speedup_1t_cpu={sp['speedup_1t_cpu']:.2f}",
        f"threads={sp['threads']:.0f}",
        f"cpu_flags={info['cpu_flags']}",
        f"load={info['load']}",
    ]
    parts += [f"rss_{s}_mib={m:.0f}" for s, m in rss.items()]
    print("bench predict: " + " ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
