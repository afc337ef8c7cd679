"""Predictor benchmark (``make bench-predict``): ORT CPU vs PyTorch eager, and peak RSS vs volume size.

1. Speed: one U-Net (``csc_common.nets`` defaults: depth 3, 8 base features, batch norm; 3 classes) with
   fixed random weights, exported to ONNX; the same region (``--speed-size``^3 voxels), the same sliding
   window (tile, overlap, blending, batch) through ``csc_predictor.tiling.sliding_window``, timed for the
   ONNX Runtime CPU engine and for PyTorch eager on the same weights, same thread count. Best of
   ``--repeats``.
2. Memory: ``csc-predict --whole-volume`` as a child process on synthetic 256^3 and 512^3 EM volumes with
   the same model and block size; peak RSS of each child from ``wait4``. Flat (set by the block size,
   not the volume) is the target.

Last line: ``bench predict: speedup=<x> ort_vox_s=<n> torch_vox_s=<n> rss_256_mib=<n> rss_512_mib=<n>``.
"""

import argparse
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


def speed(
    onnx_json: Path, *, size: int, tile: int, overlap: float, batch: int, threads: int, repeats: int
) -> tuple[float, float]:
    """(ORT voxels/s, torch voxels/s) on the same region and tiling."""
    from csc_predictor.engines import ModelSpec, OnnxEngine, TorchEngine
    from csc_predictor.tiling import sliding_window

    spec = ModelSpec.load(onnx_json)
    raw = np.random.default_rng(0).uniform(-1, 1, size=(size, size, size)).astype(np.float32)
    engines = [OnnxEngine(spec, provider="cpu", threads=threads), TorchEngine(spec, provider="cpu", threads=threads)]
    kw = dict(tile=(tile,) * 3, n_classes=len(CLASSES), overlap=overlap, blend="gaussian", batch_size=batch)
    out, best = {}, {e.name: float("inf") for e in engines}
    for eng in engines:
        sliding_window(raw[:tile, :tile, :tile], eng, **kw)  # warm-up
    for _ in range(repeats):  # interleaved, so load from other processes hits both engines alike
        for eng in engines:
            t = time.perf_counter()
            out[eng.name] = sliding_window(raw, eng, **kw)
            best[eng.name] = min(best[eng.name], time.perf_counter() - t)
    results = {name: raw.size / secs for name, secs in best.items()}
    for eng in engines:
        print(
            f"speed {eng.name:5s} ({eng.provider}, {eng.threads['intra_op']} threads): {size}^3 voxels, "
            f"tile {tile}, overlap {overlap}, batch {batch}: best of {repeats} {best[eng.name]:.2f} s, "
            f"{results[eng.name] / 1e6:.3f} Mvox/s",
            file=sys.stderr,
        )
    diff = float(np.abs(out["onnx"] - out["torch"]).max())
    print(f"speed: max |p_ort - p_torch| = {diff:.2e}", file=sys.stderr)
    return results["onnx"], results["torch"]


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
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"bench predict: csc-predict failed ({proc.returncode}): {err.strip()[-400:]}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--speed-size", type=int, default=112, help="edge of the region timed for both engines")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
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
        ort_vs, torch_vs = speed(
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
    parts = [f"speedup={ort_vs / torch_vs:.2f}", f"ort_vox_s={ort_vs:.0f}", f"torch_vox_s={torch_vs:.0f}"]
    parts += [f"rss_{s}_mib={m:.0f}" for s, m in rss.items()]
    print("bench predict: " + " ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
