"""Benchmark: csc-evaluate (1 and 2 workers) against a straightforward single-process scorer of the same rules.

    .venv/bin/python services/evaluator/bench/bench_evaluate.py [--scale 1.0] [--keep DIR]

Synthetic submission: 16 crops (edge 32..80 voxels at the default --scale 0.8; the issue's 300^3 is scaled down so
the whole run, including the slow reference, stays under 5 minutes on 2 cores), 10 instance + 10
semantic classes per crop, a few thousand instances in all; predictions are the truth with shifted,
dropped, split and extra objects and perturbed semantic masks, packed as a zip. Each variant runs in
its own process; we report wall time, peak RSS (process + its workers) and truth voxels scored per
second, check that the reference gives the same scores, and end with

    bench evaluate: speedup=<reference / ours with 2 workers> wall_s=<ours, 2 workers> rss_mib=<its peak>
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

INSTANCE = ["nuc", "ves", "endo", "lyso", "ld", "perox", "mito", "np", "mt", "cell"]
SEMANTIC = ["ecs", "pm", "mito_mem", "mito_lum", "er_mem", "er_lum", "golgi_mem", "cyto", "nucpl", "hchrom"]


# ---------------------------------------------------------------- synthetic data
def _boxes(rng, shape, n, lo, hi):
    out = []
    for _ in range(n):
        size = rng.integers(lo, hi + 1, 3)
        start = [int(rng.integers(0, max(1, s - z))) for s, z in zip(shape, size, strict=True)]
        out.append(tuple(slice(a, min(a + int(z), s)) for a, z, s in zip(start, size, shape, strict=True)))
    return out


def make_data(root: Path, scale: float, seed: int = 0) -> dict:
    from csc_common import volumes
    from csc_common.crops import CropRow, write_crop_manifest
    from csc_common.geometry import Geometry

    rng = np.random.default_rng(seed)
    edges = [40, 48, 56, 64, 72, 80, 88, 100, 100, 88, 80, 72, 64, 56, 48, 40]
    truth = volumes.open_group(root / "truth.zarr", "w")
    sub_dir = root / "sub.zarr"
    sub = volumes.open_group(sub_dir, "w")
    rows, n_inst, voxels = [], 0, 0
    for k, e in enumerate(edges):
        edge = max(16, int(round(e * scale)))
        shape = (edge, edge, edge)
        vs = (4.0, 4.0, 4.0) if k % 4 else (2.6, 2.0, 2.0)
        geom = Geometry(vs, (float(100 * k) + 0.3, 17.0, 5.5), shape)
        tg, sg = truth.require_group(f"crop{k + 1}"), sub.require_group(f"crop{k + 1}")
        attrs = {"voxel_size": list(vs), "translation": list(geom.translation)}
        for label in INSTANCE:
            t = np.zeros(shape, np.uint32)
            n = int(rng.integers(8, 24))
            for i, b in enumerate(_boxes(rng, shape, n, 3, max(4, edge // 6)), start=1):
                t[b] = i
            p = np.zeros_like(t)
            for i in range(1, n + 1):
                zz, yy, xx = np.nonzero(t == i)
                if zz.size == 0 or rng.random() < 0.1:  # dropped object
                    continue
                d = rng.integers(-1, 2, 3) if rng.random() < 0.5 else (0, 0, 0)
                zz, yy, xx = (np.clip(a + int(o), 0, s - 1) for a, o, s in zip((zz, yy, xx), d, shape, strict=True))
                p[zz, yy, xx] = i
            for b in _boxes(rng, shape, int(rng.integers(0, 4)), 1, 3):  # false positives
                p[b] = 1000 + int(rng.integers(0, 100))
            n_inst += n
            volumes.create_array(tg, label, shape=shape, dtype=t.dtype, attrs=attrs)[...] = t
            volumes.create_array(sg, label, shape=shape, dtype=p.dtype, attrs={**attrs, "shape": list(shape)})[...] = p
            rows.append(CropRow(k + 1, "bench", label, geom))
            voxels += t.size
        for label in SEMANTIC:
            t = np.zeros(shape, np.uint8)
            for b in _boxes(rng, shape, 6, edge // 8, edge // 3):
                t[b] = 1
            p = t.copy()
            for b in _boxes(rng, shape, 2, edge // 10, edge // 4):
                p[b] = 1 - p[b]
            if rng.random() < 0.1:  # a class left out of the submission
                p = None
            volumes.create_array(tg, label, shape=shape, dtype=t.dtype, attrs=attrs)[...] = t
            if p is not None:
                volumes.create_array(sg, label, shape=shape, dtype=p.dtype, attrs={**attrs, "shape": list(shape)})[
                    ...
                ] = p
            rows.append(CropRow(k + 1, "bench", label, geom))
            voxels += t.size
    (root / "test_crop_manifest.csv").write_text(write_crop_manifest(rows))
    with zipfile.ZipFile(root / "submission.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(sub_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(sub_dir).as_posix())
    shutil.rmtree(sub_dir)
    return {"crops": len(edges), "instances": n_inst, "voxels": voxels, "max_edge": max(16, int(round(100 * scale)))}


# ---------------------------------------------------------------- reference: the same rules, written simply
def reference_scores(root: Path) -> dict:
    """Single process, whole-volume operations, dense assignment: slow but obviously the rules."""
    import cc3d
    from csc_common import classes, volumes
    from csc_common.crops import read_crop_manifest
    from csc_common.submission import align
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    rows = {(r.crop_id, r.class_label): r for r in read_crop_manifest(root / "test_crop_manifest.csv")}
    instance_classes = set(classes.instance_classes())
    work = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    with zipfile.ZipFile(root / "submission.zip") as zf:
        zf.extractall(work)
    counts: dict[str, list[float]] = {}
    try:
        for crop_dir in sorted((root / "truth.zarr").iterdir()):
            if not crop_dir.is_dir():
                continue
            for label_dir in sorted(crop_dir.iterdir()):
                if not (label_dir / ".zarray").is_file():
                    continue
                label = label_dir.name
                truth = volumes.open_array(label_dir)[...]
                row = rows[(int(crop_dir.name[4:]), label)]
                vs = np.asarray(row.geometry.voxel_size)
                pred_path = work / crop_dir.name / label
                inst = label in instance_classes
                c = counts.setdefault(label, [0, 0, 0, 0.0, 0])
                cap = float(min(vs * np.asarray(truth.shape)) / 2)
                nrm = np.linalg.norm(vs)
                if not pred_path.exists():
                    if inst:
                        n = len(np.unique(truth)) - 1
                        c[2] += n
                        c[4] += n
                    else:
                        c[2] += truth.size
                    continue
                pred = align.read_aligned(pred_path, row.geometry, kind=align.resample_kind(label))
                if not inst:
                    tp = int(np.sum((pred > 0) & (truth > 0)))
                    c[0] += tp
                    c[1] += int(np.sum(pred > 0)) - tp
                    c[2] += int(np.sum(truth > 0)) - tp
                    continue
                p, n_pred = cc3d.connected_components(pred, connectivity=26, return_N=True)
                gt_ids = [int(g) for g in np.unique(truth) if g != 0]
                n_gt = int(truth.max())
                if n_gt and n_pred and n_pred / n_gt > 10 + 50 * np.exp(-n_gt / 5):
                    continue
                # per-pair IoU loops
                cost = np.full((len(gt_ids), n_pred + len(gt_ids)), np.inf)
                for gi, g in enumerate(gt_ids):
                    mg = truth == g
                    cost[gi, n_pred + gi] = 1_000_001
                    for q in np.unique(p[mg]):
                        if q == 0:
                            continue
                        mq = p == q
                        iou = np.float32(np.sum(mg & mq) / np.sum(mg | mq))
                        if iou > 0:
                            cost[gi, q - 1] = int((1.0 - float(iou)) * 1_000_000)
                mapping = {}
                if gt_ids and n_pred:
                    r, col = linear_sum_assignment(cost)
                    mapping = {int(q) + 1: gt_ids[gi] for gi, q in zip(r, col, strict=True) if q < n_pred}
                lut = np.zeros(n_pred + 1, np.int64)
                for q, g in mapping.items():
                    lut[q] = g
                remapped = lut[p]
                dists = []
                for g in gt_ids:  # full-volume EDTs
                    a, b = truth == g, remapped == g
                    if not b.any():
                        dists.append(cap)
                        continue
                    d = max(
                        ndimage.distance_transform_edt(~b, sampling=vs)[a].max(),
                        ndimage.distance_transform_edt(~a, sampling=vs)[b].max(),
                    )
                    dists.append(min(d, cap))
                dists += [cap] * (n_pred - len(mapping))
                d32 = np.asarray(dists, np.float32)
                c[0] += len(mapping)
                c[1] += n_pred - len(mapping)
                c[2] += len(gt_ids) - len(mapping)
                c[3] += float(np.sum(1.01 ** (-d32 / nrm)))
                c[4] += len(dists)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {}
    for label, (tp, fp, fn, hs, hn) in counts.items():
        if label in instance_classes:
            f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
            nh = hs / hn if hn else 0.0
            out[label] = (f1 * nh) ** 0.5 if (2 * tp + fp + fn or hn) else 1.0
        else:
            out[label] = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return out


# ---------------------------------------------------------------- variants, each in its own process
def _peak_rss_mib() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, kids) / 1024)


def run_variant(variant: str, root: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    if variant == "ours":
        from csc_evaluator.cli import main

        out = root / f"out{workers}"
        rc = main(
            [
                str(root / "submission.zip"),
                "--truth",
                str(root / "truth.zarr"),
                "--output",
                str(out / "result.json"),
                "--workers",
                str(workers),
                "--rules",
                "documented",  # the reference below writes the documented Hausdorff rule; speed is the same
                "-q",
            ]
        )
        assert rc == 0, rc
        ext = json.loads((out / "result_extended.json").read_text())
        scores = {k: v.get("combined_score", v.get("iou")) for k, v in ext["label_scores"].items()}
    else:
        scores = reference_scores(root)
    return {"wall_s": time.perf_counter() - t0, "rss_mib": _peak_rss_mib(), "scores": scores}


def _spawn(variant: str, root: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--data", str(root), "--workers", str(workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"bench variant {variant} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.8, help="crop edge multiplier (default 0.8: 32..80 voxels)")
    ap.add_argument("--keep", help="keep the synthetic data in this folder")
    ap.add_argument("--variant", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, Path(args.data), args.workers)))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        info = make_data(root, args.scale)
        print(
            f"data: {info['crops']} crops up to {info['max_edge']}^3, {info['instances']} GT instances, "
            f"{len(INSTANCE)}+{len(SEMANTIC)} classes, {info['voxels'] / 1e6:.1f} M truth voxels "
            f"(made in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs)"
        )
        results = {}
        for name, variant, workers in (("ours-1", "ours", 1), ("ours-2", "ours", 2), ("reference", "reference", 1)):
            r = _spawn(variant, root, workers)
            results[name] = r
            print(
                f"{name:<10} wall {r['wall_s']:8.2f} s   peak RSS {r['rss_mib']:6d} MiB   "
                f"{info['voxels'] / r['wall_s'] / 1e6:8.2f} M voxels/s"
            )
        ours, ref = results["ours-2"]["scores"], results["reference"]["scores"]
        worst = max(abs(ours[k] - ref[k]) for k in ref)
        same12 = results["ours-1"]["scores"] == results["ours-2"]["scores"]
        print(f"max |ours - reference| over {len(ref)} class scores: {worst:.2e}; 1 vs 2 workers identical: {same12}")
        if worst > 1e-9 or not same12 or set(ours) != set(ref):
            sys.exit("bench evaluate: results differ")
        speedup = results["reference"]["wall_s"] / results["ours-2"]["wall_s"]
        print(
            f"bench evaluate: speedup={speedup:.2f} wall_s={results['ours-2']['wall_s']:.2f} "
            f"rss_mib={results['ours-2']['rss_mib']}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
