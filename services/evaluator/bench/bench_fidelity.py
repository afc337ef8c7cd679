"""Differential benchmark: csc-evaluate against the official scorer (upstream 6b9ad68) on generated cases.

    CSC_ORACLE=DIR .venv/bin/python services/evaluator/bench/bench_fidelity.py \
        [--cases 200] [--seed 0] [--rules challenge|documented|official] [--departures 3] [--keep DIR]

DIR is an install made by ``../shared/oracle/install.sh DIR`` (the official package in its own venv,
CPU only). Without it the benchmark says how to make one and exits 0: the oracle is a development
tool, never a dependency of the project, its tests or CI.

Each case is a submission zip + truth zarr + test crop manifest in a fresh temp folder (never
/dev/shm), drawn from a seeded generator across the rule space: instance objects exact, shifted,
dilated, cut in half, dropped, split by a one-voxel gap plane (equal halves: exact matching ties),
split with both halves keeping one id, merged with a neighbour by a thin bridge; specks, and speck
counts just over and just under the instance-ratio cutoff; empty truth or prediction; missing
classes and crops; anisotropic voxels, sub-voxel and whole-voxel translations, predictions
submitted coarser or finer than the truth (resampled up or down); semantic masks as booleans or
float probabilities; uint8..uint64 ids, sparse and huge prediction ids; nested zip roots and crop
folders named ``<N>``. Every case is scored by csc in-process (``csc_evaluator.cli.main``) and by the
official scorer through ``../shared/oracle/score.sh``, one after the other (the official writes the
manifest into its own package folder, so two cannot run at once); every field of the public and
the extended results is compared to 1e-6 (``git_version`` aside). A disagreeing case is copied to
``--keep`` (default ``data/bench-fidelity/``) with both results, ready to become a test fixture.

``--departures K`` adds K cases for each departure README.md lists that a small case can show,
scored by csc under every ``--rules`` value, and prints which rules agree with the official.

Last line: ``bench fidelity: cases=N agree=M max_abs_diff=... speedup=...`` (speedup = official
wall time / ours, summed over the cases; the official's includes starting Python and importing its
package per case, ``speedup_net`` takes the measured import time out).
"""

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[3]
TOL = 1e-6
RULES = ("challenge", "documented", "official")
INSTANCE = ["mito", "ves", "nuc", "lyso", "ld", "perox", "endo"]
SEMANTIC = ["ecs", "er", "cyto", "pm", "mito_mem"]
INSTALL_HINT = "install it once with ../shared/oracle/install.sh DIR (CPU only, its own venv) and set CSC_ORACLE=DIR"


# ---------------------------------------------------------------- the oracle
def oracle_dir() -> Path | None:
    """The install ``CSC_ORACLE`` names, if it looks like one made by install.sh."""
    raw = os.environ.get("CSC_ORACLE", "").strip()
    if not raw:
        return None
    d = Path(raw)
    pkg = d / "src" / "src" / "cellmap_segmentation_challenge"
    ok = (d / "venv" / "bin" / "python").is_file() and pkg.is_dir() and (d / "torchvision-stub").is_dir()
    return d if ok else None


def score_script() -> Path | None:
    """``score.sh`` beside install.sh: ``CSC_ORACLE_SCORE`` or ``shared/oracle/score.sh`` above the repo."""
    raw = os.environ.get("CSC_ORACLE_SCORE", "").strip()
    if raw:
        return Path(raw) if Path(raw).is_file() else None
    for parent in REPO.parents:
        cand = parent / "shared" / "oracle" / "score.sh"
        if cand.is_file():
            return cand
    return None


def run_official(oracle: Path, script: Path, case: Path, out: Path) -> tuple[int, float]:
    """Score ``case`` with the official scorer; (exit code, wall seconds of the scorer itself)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(script), str(oracle), str(case / "submission.zip"), str(case / "truth.zarr"),
         str(case / "test_crop_manifest.csv"), str(out / "result.json")],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    wall = time.perf_counter() - t0
    timing = out / "result.time"
    if timing.is_file():
        fields = dict(kv.split("=", 1) for kv in timing.read_text().split() if "=" in kv)
        wall = float(fields.get("wall_s", wall))
    if proc.returncode != 0:
        (out / "score.stderr").write_text(proc.stdout + proc.stderr)
    return proc.returncode, wall


def official_import_seconds(oracle: Path) -> float:
    """Starting the official's Python and importing its package (best of three: the first run warms the caches)."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [str(oracle / "venv" / "bin" / "python"), "-c", "import cellmap_segmentation_challenge.evaluate"],
            capture_output=True,
            check=False,
        )
        best = min(best, time.perf_counter() - t0)
    return best


def run_ours(case: Path, out: Path, rules: str) -> tuple[int, float]:
    from csc_evaluator.cli import main

    out.mkdir(parents=True, exist_ok=True)
    argv = [str(case / "submission.zip"), "--truth", str(case / "truth.zarr"),
            "--test-manifest", str(case / "test_crop_manifest.csv"), "--output", str(out / "result.json"),
            "--rules", rules, "--work-dir", str(out), "-qq"]  # fmt: skip
    t0 = time.perf_counter()
    rc = main(argv)
    return rc, time.perf_counter() - t0


# ---------------------------------------------------------------- comparison
def compare(got: Any, want: Any, where: str = "$") -> tuple[list[str], float]:
    """Every field of ``want`` against ``got``: (differences, largest numeric difference)."""
    if isinstance(want, dict) and isinstance(got, dict):
        diffs, worst = [], 0.0
        keys = set(want) | set(got)
        keys.discard("git_version")
        for k in sorted(keys, key=str):
            if k not in got or k not in want:
                diffs.append(f"{where}.{k}: only in {'official' if k in want else 'csc'}")
                continue
            d, w = compare(got[k], want[k], f"{where}.{k}")
            diffs += d
            worst = max(worst, w)
        return diffs, worst
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: length {len(got)} != {len(want)}"], 0.0
        diffs, worst = [], 0.0
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            d, m = compare(g, w, f"{where}[{i}]")
            diffs += d
            worst = max(worst, m)
        return diffs, worst
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool):
        if isinstance(got, bool):
            return [f"{where}: {got!r} != {want!r}"], 0.0
        if math.isnan(want) and math.isnan(got):
            return [], 0.0
        diff = abs(float(got) - float(want))
        return ([] if diff <= TOL else [f"{where}: csc {got!r} != official {want!r}"]), diff
    return ([] if got == want else [f"{where}: csc {got!r} != official {want!r}"]), 0.0


def compare_results(ours: Path, official: Path) -> tuple[list[str], float]:
    diffs, worst = [], 0.0
    for name in ("result.json", "result_extended.json"):
        a, b = ours / name, official / name
        if not a.is_file() or not b.is_file():
            diffs.append(f"{name}: missing ({'csc' if not a.is_file() else 'official'})")
            continue
        d, w = compare(json.loads(a.read_text()), json.loads(b.read_text()), name)
        diffs += d
        worst = max(worst, w)
    return diffs, worst


# ---------------------------------------------------------------- case generation
@dataclass
class Case:
    """What one generated case exercises (for the coverage line and the fixture's case.json)."""

    seed: list[int]
    family: str
    features: Counter = field(default_factory=Counter)
    crops: list[dict] = field(default_factory=list)


def _geometry(rng: np.random.Generator, case: Case):
    from csc_common.geometry import Geometry

    if rng.random() < 0.4:
        vs = tuple(float(v) for v in rng.choice([2.0, 3.0, 4.0, 5.0, 8.0], 3))
        case.features["anisotropic"] += len(set(vs)) > 1
    else:
        vs = (float(rng.choice([2.0, 4.0, 8.0])),) * 3
    shape = tuple(int(s) for s in rng.integers(14, 41, 3))
    if rng.random() < 0.1:
        shape = (64, 64, 64) if rng.random() < 0.5 else tuple(int(s) for s in rng.integers(40, 65, 3))
    trans = tuple(float(v * int(rng.integers(-20, 200))) + float(rng.choice([0.0, 0.0, 0.3, 0.5])) * v for v in vs)
    return Geometry(vs, trans, shape)


def _place(rng, taken: np.ndarray, lo: int, hi: int, tries: int = 60) -> tuple[slice, ...] | None:
    """A random box not touching anything in ``taken`` (one voxel apart)."""
    shape = taken.shape
    for _ in range(tries):
        size = [int(rng.integers(lo, min(hi, s - 2) + 1)) for s in shape]
        start = [int(rng.integers(1, s - z)) for s, z in zip(shape, size, strict=True)]
        box = tuple(slice(a, a + z) for a, z in zip(start, size, strict=True))
        grown = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        if not taken[grown].any():
            return box
    return None


def _object(rng, shape, box) -> np.ndarray:
    """A box or an ellipsoid filling ``box``, as a boolean volume."""
    m = np.zeros(shape, bool)
    if rng.random() < 0.5:
        m[box] = True
        return m
    grids = np.ogrid[tuple(slice(0, b.stop - b.start) for b in box)]
    r = [max((b.stop - b.start) / 2, 0.5) for b in box]
    inside = sum(((g + 0.5 - ri) / ri) ** 2 for g, ri in zip(grids, r, strict=True)) <= 1.0
    m[box] = inside
    return m if m.any() else _object(rng, shape, box)


def _isolated_voxels(rng, pred: np.ndarray, n: int, value_of) -> int:
    """Add up to ``n`` single-voxel objects that touch nothing (not even diagonally)."""
    from scipy import ndimage

    free = ~ndimage.binary_dilation(pred > 0, np.ones((3, 3, 3), bool))
    added = 0
    for _ in range(n * 20):
        if added == n:
            break
        z, y, x = (int(rng.integers(0, s)) for s in pred.shape)
        if not free[z, y, x]:
            continue
        pred[z, y, x] = value_of(added)
        free[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = False
        added += 1
    return added


def _bridge(pred: np.ndarray, a: np.ndarray, b: np.ndarray, value) -> None:
    """A one-voxel-thick straight line from the centre of ``a`` to the centre of ``b``."""
    ca = np.array([c.mean() for c in np.nonzero(a)])
    cb = np.array([c.mean() for c in np.nonzero(b)])
    steps = int(np.abs(cb - ca).max() * 2) + 2
    for t in np.linspace(0.0, 1.0, steps):
        p = np.rint(ca + (cb - ca) * t).astype(int)
        pred[tuple(p)] = value


def _instance_pair(rng, shape, case: Case, feats: Counter) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction at the truth's grid) for one instance class."""
    from scipy import ndimage

    t_dtype = rng.choice([np.uint8, np.uint16, np.uint32, np.uint64])
    empty_truth = rng.random() < 0.07
    n_obj = 0 if empty_truth else int(rng.integers(1, 13 if t_dtype != np.uint8 else 10))
    masks: list[np.ndarray] = []
    taken = np.zeros(shape, bool)
    for _ in range(n_obj):
        box = _place(rng, taken, 3, 9)
        if box is None:
            break
        m = _object(rng, shape, box)
        taken |= m
        masks.append(m)
    sparse = t_dtype in (np.uint32, np.uint64) and rng.random() < 0.4
    top = min(20000, int(np.prod(shape)))  # the official cannot score ids >= the voxel count (departure 8)
    ids = rng.choice(np.arange(1, top), len(masks), replace=False) if sparse else rng.permutation(len(masks)) + 1
    feats["sparse_truth_ids"] += bool(sparse and masks)
    truth = np.zeros(shape, t_dtype)
    for m, i in zip(masks, ids, strict=True):
        truth[m] = i
    feats["empty_truth"] += not masks

    p_dtype = rng.choice([np.uint16, np.uint32, np.uint64, np.int32])
    huge = p_dtype == np.uint64 and rng.random() < 0.5
    feats["uint64_ids"] += bool(p_dtype == np.uint64 or t_dtype == np.uint64)
    nxt = iter(rng.permutation(10_000) + (2**40 if huge else 1))
    pred = np.zeros(shape, np.int64)
    ops = ["exact", "shift", "dilate", "half", "drop", "split_gap", "same_id_split", "merge"]
    weights = np.array([2, 2, 1, 1, 1, 2, 1.5, 1.5])
    k = 0
    while k < len(masks):
        m = masks[k]
        op = str(rng.choice(ops, p=weights / weights.sum()))
        if op == "merge" and k + 1 == len(masks):
            op = "exact"
        feats[op] += 1
        v = next(nxt)
        if op == "exact":
            pred[m] = v
        elif op == "shift":
            sh = rng.integers(-2, 3, 3)
            pred[np.roll(m, tuple(int(s) for s in sh), (0, 1, 2))] = v
        elif op == "dilate":
            pred[ndimage.binary_dilation(m) if rng.random() < 0.5 else ndimage.binary_erosion(m) | _one(m)] = v
        elif op == "half":
            zs = np.nonzero(m)[0]
            pred[m & (np.arange(shape[0])[:, None, None] <= (zs.min() + zs.max()) // 2)] = v
        elif op in ("split_gap", "same_id_split"):
            axis = int(rng.integers(0, 3))
            where = np.nonzero(m)[axis]
            lo, hi = int(where.min()), int(where.max())
            if hi - lo < 2:
                pred[m] = v
            else:
                cut = (lo + hi) // 2 if rng.random() < 0.7 else int(rng.integers(lo + 1, hi))  # middle: equal halves
                coord = np.arange(shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
                pred[m & (coord < cut)] = v
                pred[m & (coord > cut)] = v if op == "same_id_split" else next(nxt)
        elif op == "merge":
            other = masks[k + 1]
            pred[m | other] = v
            _bridge(pred, m, other, v)
            k += 1
        k += 1

    ratio_mode = rng.random()
    if masks and ratio_mode < 0.12:  # speck counts right at the instance-ratio cutoff: one over, or exactly on it
        import cc3d

        n_gt = int(truth.max())
        cutoff = 10 + 50 * math.exp(-n_gt / 5)
        over = ratio_mode < 0.06
        target = int(math.floor(cutoff * n_gt)) + (1 if over else 0)
        have = int(cc3d.connected_components(pred, connectivity=26, return_N=True)[1])
        if target > have and target - have <= 400:
            added = _isolated_voxels(rng, pred, target - have, lambda _: next(nxt))
            feats["ratio_over" if over else "ratio_at_cutoff"] += added == target - have
    else:
        n = _isolated_voxels(rng, pred, int(rng.integers(0, 6)), lambda _: next(nxt))
        feats["specks"] += n > 0
    if rng.random() < 0.07:
        pred[:] = 0
        feats["empty_prediction"] += 1
    return truth, pred.astype(p_dtype)


def _one(m: np.ndarray) -> np.ndarray:
    """One voxel of ``m`` (an eroded object must not vanish)."""
    out = np.zeros_like(m)
    out[tuple(int(c[0]) for c in np.nonzero(m))] = True
    return out


def _semantic_pair(rng, shape, feats: Counter) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    truth = np.zeros(shape, np.uint8)
    if rng.random() > 0.05:
        taken = np.zeros(shape, bool)
        for _ in range(int(rng.integers(1, 7))):
            box = _place(rng, taken, 3, 14, tries=10)
            if box is not None:
                truth[_object(rng, shape, box)] = 1
    else:
        feats["empty_truth"] += 1
    shifted = np.roll(truth, tuple(int(s) for s in rng.integers(-1, 2, 3)), (0, 1, 2)).astype(np.float32)
    if rng.random() < 0.5:
        feats["semantic_float"] += 1
        prob = ndimage.gaussian_filter(shifted, float(rng.uniform(0.5, 1.5))) + rng.normal(0, 0.05, shape)
        prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
        prob[prob < 0.1] = 0.0  # exact zeros beside small positive values: the same-grid rule is "> 0"
        return truth, prob
    noise = rng.random(shape) < 0.02
    return truth, (shifted.astype(bool) ^ noise).astype(rng.choice([np.uint8, bool]))


def _resample_source(rng, pred: np.ndarray, target, feats: Counter):
    """The prediction as submitted: same grid, or coarser/finer (nearest sampling), maybe offset."""
    from csc_common.geometry import Geometry

    vs = np.asarray(target.voxel_size)
    r = rng.random()
    if r < 0.65:
        factor = np.ones(3)
    elif r < 0.8:
        factor = np.full(3, 2.0)
        feats["resample_up"] += 1  # a coarser submission is upsampled by the scorer
    elif r < 0.95:
        factor = np.full(3, 0.5)
        feats["resample_down"] += 1
    else:
        factor = rng.choice([0.5, 1.0, 2.0], 3)
        feats["resample_mixed"] += 1
    src_vs = vs * factor
    src_shape = np.maximum(1, np.ceil(np.asarray(target.shape) / factor).astype(int))
    idx = np.ix_(*[np.minimum((np.arange(n) * f).astype(int), s - 1) for n, f, s in zip(src_shape, factor, pred.shape)])
    src = pred[idx]
    offset = np.zeros(3)
    if rng.random() < 0.3:
        offset += rng.uniform(-0.9, 0.9, 3) * vs
        feats["subvoxel_translation"] += 1
    if rng.random() < 0.15:
        offset += rng.integers(-2, 3, 3) * vs
        feats["voxel_translation"] += 1
    trans = tuple(float(t + o) for t, o in zip(target.translation, offset, strict=True))
    return src, Geometry(tuple(float(v) for v in src_vs), trans, tuple(int(s) for s in src.shape))


def _write_array(group, name: str, data: np.ndarray, geom, extra: dict | None = None) -> None:
    from csc_common import volumes

    attrs = {"voxel_size": list(geom.voxel_size), "translation": list(geom.translation), **(extra or {})}
    arr = volumes.create_array(group, name, shape=data.shape, dtype=data.dtype, attrs=attrs)
    arr[...] = data


def make_case(root: Path, seed: list[int], family: str = "random") -> Case:
    """Write ``root/{truth.zarr, test_crop_manifest.csv, submission.zip}`` for one case."""
    from csc_common import volumes
    from csc_common.crops import CropRow, write_crop_manifest
    from csc_common.geometry import Geometry

    rng = np.random.default_rng(seed)
    case = Case(seed=list(seed), family=family)
    truth = volumes.open_group(root / "truth.zarr", "w")
    sub_dir = root / "_sub"
    sub = volumes.open_group(sub_dir, "w")
    rows: list[CropRow] = []
    inst_pool = list(rng.choice(INSTANCE, 2, replace=False))
    sem_pool = list(rng.choice(SEMANTIC, 2, replace=False))
    n_crops = int(rng.integers(1, 4))
    crop_ids = [int(c) for c in rng.choice(np.arange(1, 999), n_crops, replace=False)]
    submitted_crops = [c for c in crop_ids if rng.random() > 0.12] or crop_ids[:1]
    case.features["missing_crop"] += len(submitted_crops) < len(crop_ids)
    unprefixed = rng.random() < 0.1
    case.features["crop_folders_named_N"] += unprefixed
    for cid in crop_ids:
        geom = _geometry(rng, case)
        tg = truth.require_group(f"crop{cid}")
        sg = sub.require_group(str(cid) if unprefixed else f"crop{cid}") if cid in submitted_crops else None
        labels = [c for c in inst_pool if rng.random() < 0.8] + [c for c in sem_pool if rng.random() < 0.6]
        labels = labels or [inst_pool[0]]
        for label in labels:
            is_inst = label in INSTANCE
            t, p = (
                _instance_pair(rng, geom.shape, case, case.features)
                if is_inst
                else _semantic_pair(rng, geom.shape, case.features)
            )
            _write_array(tg, label, t, geom)
            rows.append(CropRow(cid, "ds", label, geom))
            if sg is None:
                continue
            if rng.random() < 0.08:
                case.features["missing_class"] += 1
                continue
            src, sgeom = _resample_source(rng, p, geom, case.features)
            _write_array(sg, label, src, sgeom)
        case.crops.append({"crop": cid, "geometry": geom.to_json(), "labels": labels})
    if family != "random":
        _departure(family, rng, truth, sub, rows, crop_ids[0], unprefixed, case)
    if rng.random() < 0.2:  # rows without truth count in total_evals only
        g = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (8, 8, 8))
        rows.append(CropRow(int(max(crop_ids) + 1), "ds", str(rng.choice(SEMANTIC)), g))
        case.features["manifest_row_without_truth"] += 1
    (root / "test_crop_manifest.csv").write_text(write_crop_manifest(rows))
    nested = rng.random() < 0.1
    case.features["nested_zip_root"] += nested
    prefix = "team/submission.zarr/" if nested else ""
    with zipfile.ZipFile(root / "submission.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(sub_dir.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(sub_dir).as_posix())
    shutil.rmtree(sub_dir)
    return case


# ---------------------------------------------------------------- departures (README "Where we differ")
DEPARTURES = {  # keys and numbers as in README.md "Where we differ"
    "d1_unmatched_id_kept": "1: an unmatched prediction whose component id equals an unmatched GT id",
    "d2_multiscale_group": "2: a class submitted as an OME-NGFF multiscale group",
    "d3_mask_array": "3: a <class>_mask truth array",
    "d6_truth_without_row": "6: a submitted truth class with no test-manifest row",
    "d7_group_transform": "7: a multiscale group with a group-level coordinateTransformations",
    "d8_gt_id_over_voxels": "8: a GT id >= the crop's voxel count",
}


def _departure(family, rng, truth, sub, rows, cid, unprefixed, case: Case) -> None:
    """Add the structure that shows one departure to crop ``cid`` of an otherwise random case."""
    from csc_common import volumes
    from csc_common.crops import CropRow
    from csc_common.geometry import Geometry

    geom = Geometry((4.0, 4.0, 4.0), tuple(float(v) for v in rng.integers(0, 50, 3) * 4), (32, 32, 32))
    crop = f"crop{cid}"
    scrop = str(cid) if unprefixed else crop
    tg = truth[crop]
    sg = sub.require_group(scrop)
    label = "mt" if family in ("d1_unmatched_id_kept", "d8_gt_id_over_voxels") else "nucpl"  # not in the pools
    rows[:] = [r for r in rows if (r.crop_id, r.class_label) != (cid, label)]
    if family == "d1_unmatched_id_kept":
        t = np.zeros(geom.shape, np.uint8)
        t[4:7, 4:7, 4:7] = 1  # unmatched GT 1, nearer to the stray component than the cap (64 nm)
        t[1:4, 20:23, 20:23] = 2  # matched
        p = np.zeros(geom.shape, np.uint8)
        p[0, 0, 0] = 3  # component 1 in raster order, overlaps nothing
        p[1:4, 20:23, 20:23] = 4
        _write_array(tg, label, t, geom)
        _write_array(sg, label, p, geom)
        rows.append(CropRow(cid, "ds", label, geom))
        case.features[family] += 1
        return
    if family == "d8_gt_id_over_voxels":
        t = np.zeros(geom.shape, np.uint32)
        t[4:9, 4:9, 4:9] = 1
        t[15:20, 15:20, 15:20] = geom.num_voxels + 7
        p = np.roll(t, 1, 2)
        _write_array(tg, label, t, geom)
        _write_array(sg, label, p, geom)
        rows.append(CropRow(cid, "ds", label, geom))
        case.features[family] += 1
        return
    t = np.zeros(geom.shape, np.uint8)
    t[2:9, 3:12, 4:10] = 1
    p = np.roll(t, 1, 0)
    if family in ("d2_multiscale_group", "d7_group_transform"):
        fine = np.repeat(np.repeat(np.repeat(p, 2, 0), 2, 1), 2, 2)
        levels = [(fine, Geometry((2.0,) * 3, geom.translation, fine.shape)), (p, geom)]
        grp = volumes.write_multiscale(sg, label, levels)
        if family == "d7_group_transform":
            ms = dict(grp.attrs)["multiscales"]
            ms[0]["coordinateTransformations"] = [{"type": "translation", "translation": [8.0, 0.0, 0.0]}]
            grp.attrs["multiscales"] = ms
    else:
        _write_array(sg, label, p, geom)
    _write_array(tg, label, t, geom)
    if family == "d3_mask_array":
        mask = np.ones(geom.shape, np.uint8)
        mask[:, :, :5] = 0
        _write_array(tg, f"{label}_mask", mask, geom)
    if family != "d6_truth_without_row":
        rows.append(CropRow(cid, "ds", label, geom))
    case.features[family] += 1


# ---------------------------------------------------------------- driver
def score_case(case_dir: Path, oracle: Path, script: Path, rules: list[str]) -> dict[str, Any]:
    off_rc, off_wall = run_official(oracle, script, case_dir, case_dir / "official")
    out: dict[str, Any] = {"official_rc": off_rc, "official_wall": off_wall, "rules": {}}
    for r in rules:
        rc, wall = run_ours(case_dir, case_dir / f"csc_{r}", r)
        if off_rc != 0 or rc != 0:
            verdict = "both_refuse" if off_rc and rc == 2 else "official_fails" if off_rc else "csc_fails"
            diffs, worst = [f"official rc={off_rc}, csc rc={rc}"], 0.0
        else:
            diffs, worst = compare_results(case_dir / f"csc_{r}", case_dir / "official")
            verdict = "agree" if not diffs else "differ"
        out["rules"][r] = {"verdict": verdict, "diffs": diffs, "max_abs_diff": worst, "wall": wall}
    return out


def keep_case(case_dir: Path, keep: Path, name: str, case: Case, result: dict[str, Any]) -> Path:
    dest = keep / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for item in ("submission.zip", "truth.zarr", "test_crop_manifest.csv", "official"):
        src = case_dir / item
        if src.is_dir():
            shutil.copytree(src, dest / item)
        elif src.exists():
            shutil.copy2(src, dest / item)
    for r in result["rules"]:
        if (case_dir / f"csc_{r}").is_dir():
            shutil.copytree(case_dir / f"csc_{r}", dest / f"csc_{r}", ignore=shutil.ignore_patterns("tmp*", "*.zarr"))
    meta = {"seed": case.seed, "family": case.family, "features": dict(case.features), "crops": case.crops}
    (dest / "case.json").write_text(json.dumps({**meta, "result": result}, indent=1, default=str) + "\n")
    return dest


def _rules_list(text: str) -> list[str]:
    rules = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in rules if r not in RULES]
    if not rules or bad:
        raise argparse.ArgumentTypeError(f"--rules: expected a comma list of {', '.join(RULES)}, got {text!r}")
    return rules


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=int(os.environ.get("BENCH_FIDELITY_CASES", "200")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_FIDELITY_SEED", "0")))
    ap.add_argument(
        "--rules",
        type=_rules_list,
        default=os.environ.get("BENCH_FIDELITY_RULES", "challenge"),
        help="comma list; the first is the one the last line reports, the others add agree_<rules>=",
    )
    ap.add_argument("--departures", type=int, default=int(os.environ.get("BENCH_FIDELITY_DEPARTURES", "0")))
    ap.add_argument("--keep", type=Path, default=REPO / "data" / "bench-fidelity")
    args = ap.parse_args(argv)
    rules = args.rules if isinstance(args.rules, list) else _rules_list(args.rules)

    oracle, script = oracle_dir(), score_script()
    if oracle is None or script is None:
        what = "CSC_ORACLE does not point at an install made by install.sh" if oracle is None else "no score.sh found"
        print(f"bench fidelity: skipped ({what}); {INSTALL_HINT}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove the temp folder when stopped
    import_s = official_import_seconds(oracle)
    work = Path(tempfile.mkdtemp(prefix="csc-bench-fidelity-", dir=os.environ.get("TMPDIR") or "/tmp"))
    features: Counter = Counter()
    n = 0
    agree = Counter()
    worst = Counter()
    off_total = ours_total = 0.0
    table: dict[str, Counter] = {}
    jobs = [
        (fam, [args.seed, 10_000 + 100 * k + j]) for k, fam in enumerate(DEPARTURES) for j in range(args.departures)
    ]
    jobs += [("random", [args.seed, i]) for i in range(args.cases)]
    stopped = False
    try:
        for idx, (family, seed) in enumerate(jobs):
            case_dir = work / f"case{idx:04d}"
            case_dir.mkdir()
            case = make_case(case_dir, seed, family)
            res = score_case(case_dir, oracle, script, rules if family == "random" else list(RULES))
            if family == "random":
                features.update(case.features)
                n += 1
                off_total += res["official_wall"]
                ours_total += res["rules"][rules[0]]["wall"]
                for rr in rules:
                    r = res["rules"][rr]
                    agree[rr] += r["verdict"] == "agree"
                    worst[rr] = max(worst[rr], r["max_abs_diff"])
                if any(res["rules"][rr]["verdict"] != "agree" for rr in rules):
                    dest = keep_case(case_dir, args.keep, f"seed{seed[0]}-{seed[1]}", case, res)
                    for rr in rules:
                        r = res["rules"][rr]
                        if r["verdict"] != "agree":
                            print(f"case {seed} --rules {rr}: {r['verdict']} -> {dest}", file=sys.stderr)
                            for d in r["diffs"][:6]:
                                print(f"    {d}", file=sys.stderr)
            else:
                for rr, r in res["rules"].items():
                    table.setdefault(family, Counter())[f"{rr}:{r['verdict']}"] += 1
                if any(r["verdict"] != "agree" for r in res["rules"].values()):
                    keep_case(case_dir, args.keep, f"{family}-seed{seed[0]}-{seed[1]}", case, res)
            shutil.rmtree(case_dir, ignore_errors=True)
            if (idx + 1) % 10 == 0:
                print(
                    f"... {idx + 1}/{len(jobs)} cases, " + " ".join(f"{r}: {agree[r]}/{n} agree" for r in rules),
                    file=sys.stderr,
                )
    except (KeyboardInterrupt, SystemExit):
        stopped = True  # report what was scored
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("coverage: " + " ".join(f"{k}={v}" for k, v in sorted(features.items())))
    for fam, counts in table.items():
        per = "  ".join(
            f"{r}=" + ",".join(f"{k.split(':')[1]}:{c}" for k, c in sorted(counts.items()) if k.startswith(r + ":"))
            for r in RULES
        )
        print(f"departure {DEPARTURES[fam]}\n    {per}")
    speedup = off_total / ours_total if ours_total else float("nan")
    net = (off_total - n * import_s) / ours_total if ours_total else float("nan")
    others = "".join(f" agree_{r}={agree[r]} max_abs_diff_{r}={worst[r]:.3g}" for r in rules[1:])
    print(
        f"bench fidelity: cases={n} agree={agree[rules[0]]} max_abs_diff={worst[rules[0]]:.3g} speedup={speedup:.1f} "
        f"speedup_net={net:.1f} official_import_s={import_s:.2f} rules={rules[0]}{others} seed={args.seed}"
        + (" stopped_early=1" if stopped else "")
    )
    return 0 if agree[rules[0]] == n and not stopped else 1


if __name__ == "__main__":
    sys.exit(main())
