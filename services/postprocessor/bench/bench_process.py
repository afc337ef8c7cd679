"""bench process: components + watershed on an N^3 volume, whole vs blockwise; packing the 413 real test rows.

Run ``make bench-process`` (or this file with ``--size``/``--block``/``--pack-scale``). Each processing mode
runs in its own subprocess so its peak RSS is its own. The volume is a synthetic probability map of
touching balls (uint8, like the predictor's encoding), stored as zarr; the recipe is threshold 0.5 ->
26-connected components -> distance-transform watershed (the `watershed` step labels the mask first).
Both modes must give identical labels (checked by a canonical digest).

Packing uses the real test crop manifest (../shared/cellmap/test_crop_manifest.csv, 413 rows) with every
row's shape divided by ``--pack-scale`` per axis (default 8: the real rows hold 87.7 G voxels, far beyond
a 5-minute budget on 2 cores) and processed volumes at twice the row's voxel size, so the packer
really resamples (nearest for instance classes, linear + 0.5 for semantic ones) before zipping. The packer
runs as ``csc-pack`` in its own process; ``pack_413_s`` is that process's wall time, start-up included.

Last line: ``bench process: vox_s=<n> blockwise_vox_s=<n> rss_mib=<n> pack_413_s=<x>``
(vox_s = whole-array voxels/s, wall clock; rss_mib = the larger of the two modes' peak RSS; both RSS,
the CPU-time rates and the load average are logged on stderr, since a shared machine inflates wall time).
"""

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def make_probabilities(n: int, seed: int = 0) -> np.ndarray:
    """uint8 probabilities (x255) of many balls, ~1/3 of them touching a neighbour."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, n, n), np.uint8)
    r = 10
    count = int(0.08 * n**3 / (4 / 3 * np.pi * r**3))
    zz, yy, xx = np.mgrid[-r - 1 : r + 2, -r - 1 : r + 2, -r - 1 : r + 2]
    dist = np.sqrt(zz**2 + yy**2 + xx**2)
    ball = np.clip((r + 0.5 - dist) * 128 + 128, 0, 255).astype(np.uint8)
    centres = rng.integers(r + 1, n - r - 1, size=(count, 3))
    partners = centres[: count // 3] + rng.choice([-1, 1], size=(count // 3, 3)) * [14, 0, 0]
    for c in np.concatenate([centres, np.clip(partners, r + 1, n - r - 2)]):
        sl = tuple(slice(int(v) - r - 1, int(v) + r + 2) for v in c)
        np.maximum(out[sl], ball, out=out[sl])
    return out


def digest(arr, n: int) -> str:
    h = hashlib.sha256()
    for z in range(0, n, 64):
        h.update(np.ascontiguousarray(np.asarray(arr[z : z + 64]), dtype=np.uint64).tobytes())
    return h.hexdigest()


def child(mode: str, src_path: str, block: int) -> None:
    from csc_common.volumes import open_array
    from csc_postprocessor.ops import make_workspace, run_steps
    from csc_postprocessor.steps import Step

    src = open_array(src_path)
    n = src.shape[0]
    steps = (Step("threshold", value=0.5), Step("watershed", connectivity=26))
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "whole":
        data = src[...]
        ws = make_workspace(src.shape, None)
    else:
        data = src
        ws = make_workspace(src.shape, block, Path(src_path).parent)
    vol = run_steps(data, lambda a: a.astype(np.float32) / 255, steps, voxel_size=(8.0, 8.0, 8.0), ws=ws)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    result = {
        "seconds": seconds,
        "cpu_s": cpu,
        "objects": vol.count,
        "digest": digest(vol.data, n),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    ws.close()
    print(json.dumps(result))


def run_child(mode: str, src: Path, block: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--src", str(src), "--block", str(block)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_pack(tmp: Path, scale: int) -> tuple[float, int, int]:
    """Seconds ``csc-pack`` takes (its own process, start-up included) for the 413 scaled test rows."""
    from csc_common import views
    from csc_common.classes import kinds_for
    from csc_common.crops import CropRow, read_crop_manifest, write_crop_manifest
    from csc_common.geometry import Geometry
    from csc_common.manifest import now
    from csc_common.views import ClassEntry, CropEntry, Header, ProcessedView
    from csc_common.volumes import create_array, multiscale_attrs, open_group

    manifest_csv = (
        Path(os.environ.get("CSC_SHARED_CELLMAP", REPO.parent / "shared" / "cellmap")) / "test_crop_manifest.csv"
    )
    rows = read_crop_manifest(manifest_csv)
    scaled = [
        CropRow(
            r.crop_id,
            r.dataset,
            r.class_label,
            Geometry(r.geometry.voxel_size, r.geometry.translation, (max(2, s // scale) for s in r.geometry.shape)),
        )
        for r in rows
    ]
    kinds = kinds_for({r.class_label for r in scaled})  # what a dataset manifest records (the challenge's table)
    data = tmp / "pack"
    data.mkdir()
    csv = data / "test_crop_manifest.csv"
    csv.write_text(write_crop_manifest(scaled))
    grp = open_group(data / "processed.zarr", mode="w")
    crops: dict[int, list[ClassEntry]] = {}
    datasets: dict[int, str] = {}
    rng = np.random.default_rng(1)
    for r in scaled:
        g = r.geometry
        coarse = Geometry((2 * v for v in g.voxel_size), g.translation, (-(-s // 2) for s in g.shape))
        inst = kinds[r.class_label] == "instance"
        vals = rng.integers(0, 1000 if inst else 2, size=(4, 4, 4)).astype(np.uint32 if inst else np.uint8)
        rep = [-(-s // 4) for s in coarse.shape]
        vol = np.tile(vals, rep)[: coarse.shape[0], : coarse.shape[1], : coarse.shape[2]]
        group = grp.require_group(f"crop{r.crop_id}/{r.class_label}")  # the postprocessor's OME-NGFF layout
        group.attrs.update(multiscale_attrs([("s0", coarse)], name=r.class_label))
        arr = create_array(
            group,
            "s0",
            shape=coarse.shape,
            dtype=vol.dtype,
            attrs={"voxel_size": list(coarse.voxel_size), "translation": list(coarse.translation)},
        )
        arr[...] = vol
        path = f"crop{r.crop_id}/{r.class_label}/s0"
        crops.setdefault(r.crop_id, []).append(ClassEntry(r.class_label, kinds[r.class_label], coarse, path))
        datasets[r.crop_id] = r.dataset
    views.save(
        ProcessedView(
            header=Header.new("postprocessor", now(), args=[]),
            zarr=data / "processed.zarr",
            crops=tuple(CropEntry(c, datasets[c], tuple(classes)) for c, classes in crops.items()),
        ),
        data / "processed.json",
    )
    cmd = [str(Path(sys.executable).parent / "csc-pack"), "--processed", str(data / "processed.json")]
    cmd += ["--test-manifest", str(csv), "--output", str(data / "submission.json"), "-q"]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode  # the packer through its CLI: benches import no other stage's package
    seconds = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"pack CPU time {c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime:.1f}s", file=sys.stderr)
    if rc != 0:
        raise SystemExit(f"bench process: packing failed (exit {rc})")
    return seconds, len(rows), sum(r.geometry.num_voxels for r in scaled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="volume side in voxels (default 512)")
    ap.add_argument("--block", type=int, default=128, help="block side for the blockwise mode (default 128)")
    ap.add_argument("--pack-scale", type=int, default=8, help="divide each test row's shape by this per axis")
    ap.add_argument("--child", choices=["whole", "blockwise"], help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.src, args.block)
        return
    from csc_common.volumes import create_array, open_group

    n = args.size
    with tempfile.TemporaryDirectory(prefix="bench-process-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        prob = make_probabilities(n)
        src = create_array(
            open_group(tmp / "src.zarr", mode="w"), "prob", shape=prob.shape, dtype=np.uint8, chunks=(args.block,) * 3
        )
        src[...] = prob
        del prob
        print(f"volume {n}^3 made in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        whole = run_child("whole", tmp / "src.zarr" / "prob", args.block)
        print(f"whole:     {whole}", file=sys.stderr)
        blocks = run_child("blockwise", tmp / "src.zarr" / "prob", args.block)
        print(f"blockwise: {blocks} (block {args.block})", file=sys.stderr)
        same = whole["digest"] == blocks["digest"] and whole["objects"] == blocks["objects"]
        print(
            f"identical labels whole vs blockwise: {same}; CPU-time rates (contention-free view): "
            f"whole {n**3 / whole['cpu_s']:.0f} vox/s, blockwise {n**3 / blocks['cpu_s']:.0f} vox/s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            file=sys.stderr,
        )
        pack_s, n_rows, pack_vox = bench_pack(tmp, args.pack_scale)
        print(
            f"packed {n_rows} rows ({pack_vox / 1e6:.1f} M voxels, shapes / {args.pack_scale} per axis, "
            f"resampled from 2x voxel size) in {pack_s:.1f}s",
            file=sys.stderr,
        )
    vox = n**3
    if not same:
        raise SystemExit("bench process: blockwise labels differ from whole-array labels")
    print(
        f"bench process: vox_s={vox / whole['seconds']:.0f} blockwise_vox_s={vox / blocks['seconds']:.0f} "
        f"rss_mib={max(whole['rss_mib'], blocks['rss_mib']):.0f} pack_413_s={pack_s:.1f}"
    )


if __name__ == "__main__":
    main()
