"""Predictor conformance kit: run any predictor on a small fixture and check what it wrote.

A *predictor* is anything that, called as::

    <predictor> --model DIR/models/tiny/onnx-model.json --dataset DIR/dataset.json --output DIR/runs/NAME/predictions.json

writes ``predictions.json`` (a ``predictions`` manifest) and the zarr it names.
``--command "python -m csc_predictor --engine torch"`` runs a command on the host;
``--image NAME`` runs ``docker run --rm --network none -v DIR:/data NAME`` with the paths under ``/data``.
The checks (each failure is one line naming crop, class and what was expected):

1. exit status 0, the manifest exists and is valid against ``schemas/predictions.schema.json``;
2. exactly the (crop, class) pairs of the test crop manifest whose class the model predicts;
3. geometry: voxel size = the model's, translation = the minimum corner of the crop's merged
   test-manifest box, shape = ceil(box size / voxel size); the class ``path`` is ``crop<ID>/<class>/s0``,
   the array's attrs and shape agree, and its parent ``crop<ID>/<class>`` is a valid OME-NGFF 0.4
   multiscale group (axes z, y, x in nanometer) whose ``s0`` transform is the same geometry;
4. dtype = ``encoding.dtype``; decoded probabilities (value * ``encoding.scale``) finite, in [0, 1];
5. agreement with the reference predictor (``csc_predictor``, default options) on the same fixture:
   mean |p - p_ref| <= ``--tol-mean`` (0.05) and 99th percentile <= ``--tol-p99`` (0.25).

Exit 0 when every check passes, 1 otherwise (the report lists every failure).
"""

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODEL = "models/tiny/onnx-model.json"
DATASET = "dataset.json"
# Calibrated on the fixture: blended sliding windows (overlap >= 25 %, any block/tile/context) differ from
# the reference by mean <= 0.025, p99 <= 0.15; a one-voxel shift gives mean 0.08, swapped classes 0.18.
TOL_MEAN = 0.05
TOL_P99 = 0.25


@dataclass
class Report:
    name: str
    failures: list[str] = field(default_factory=list)
    checked: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        head = f"conformance {self.name}: {'PASS' if self.ok else 'FAIL'} ({self.checked} arrays checked"
        if self.stats:
            head += ", " + ", ".join(f"{k}={v:.4f}" for k, v in self.stats.items())
        return "\n".join([head + ")", *(f"  - {f}" for f in self.failures)])


def predictor_argv(
    fixture: Path, out_rel: str, *, command: str | list[str] | None = None, image: str | None = None
) -> list[str]:
    """The command line that runs a predictor on the fixture, writing ``fixture/out_rel``."""
    if image:
        base = ["docker", "run", "--rm", "--network", "none", "-v", f"{fixture.resolve()}:/data"]
        if hasattr(os, "getuid"):
            base += ["--user", f"{os.getuid()}:{os.getgid()}"]
        return [
            *base,
            image,
            "--model",
            f"/data/{MODEL}",
            "--dataset",
            f"/data/{DATASET}",
            "--output",
            f"/data/{out_rel}",
        ]
    cmd = shlex.split(command) if isinstance(command, str) else list(command or [])
    if not cmd:
        raise ValueError("give a command or an image")
    return [
        *cmd,
        "--model",
        str(fixture / MODEL),
        "--dataset",
        str(fixture / DATASET),
        "--output",
        str(fixture / out_rel),
    ]


def run_predictor(
    fixture: Path, name: str, *, command: str | list[str] | None = None, image: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    out_rel = f"runs/{name}/predictions.json"
    (fixture / out_rel).parent.mkdir(parents=True, exist_ok=True)
    argv = predictor_argv(fixture, out_rel, command=command, image=image)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=fixture)


def reference(fixture: Path) -> Path:
    """The reference predictor's output on the fixture (computed once, kept under runs/reference)."""
    out = fixture / "runs/reference/predictions.json"
    if not out.is_file():
        proc = run_predictor(fixture, "reference", command=[sys.executable, "-m", "csc_predictor", "-q"])
        if proc.returncode != 0:
            raise RuntimeError(f"the reference predictor failed: {proc.stderr.strip()[-500:]}")
    return out


def expected_volumes(fixture: Path) -> dict[tuple[int, str], dict]:
    """(crop, class) -> expected geometry json, from the fixture's test manifest and model."""
    from csc_common.crops import merged_crop_box, read_crop_manifest

    model = json.loads((fixture / MODEL).read_text())
    vs = [float(v) for v in model["input"]["voxel_size"]]
    dataset = json.loads((fixture / DATASET).read_text())
    rows = read_crop_manifest(fixture / dataset["test_manifest"])
    out = {}
    for cid in dict.fromkeys(r.crop_id for r in rows):
        crop_rows = [r for r in rows if r.crop_id == cid]
        box = merged_crop_box(crop_rows)
        geom = {
            "voxel_size": vs,
            "translation": list(box.start),
            "shape": [max(1, math.ceil(s / v - 1e-6)) for s, v in zip(box.size, vs, strict=True)],
        }
        for name in model["classes"]:
            if name in {r.class_label for r in crop_rows}:
                out[(cid, name)] = geom
    return out


def _close(a, b, tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(
        abs(float(x) - float(y)) <= tol * max(1.0, abs(float(y))) for x, y in zip(a, b, strict=True)
    )


def _numbers(v: object, n: int, *, positive: bool = False) -> bool:
    return (
        isinstance(v, list)
        and len(v) == n
        and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and (x > 0 or not positive)
            for x in v
        )
    )


def ome_ngff_problems(attrs: dict, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Why a group's attrs are not valid OME-NGFF 0.4 ``multiscales`` metadata in the challenge's layout.

    ``shapes`` maps the group's array names to their shapes. The 0.4 rules (image.schema.json and the spec's
    MUSTs): a non-empty ``multiscales`` list; per entry ``version`` "0.4", ``axes``, a non-empty ``datasets``
    list whose ``path`` names an array with one dimension per axis, each with exactly one ``scale`` transform
    (positive, one value per axis) optionally followed by one ``translation``, finest level first. On top,
    the challenge's layout (UPSTREAM.md §2.2): axes exactly z, y, x of type space in nanometer. Empty = valid.
    """
    ms_list = attrs.get("multiscales")
    if not isinstance(ms_list, list) or not ms_list:
        return ["no 'multiscales' list in the group attrs"]
    out = []
    want_axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in ("z", "y", "x")]
    for k, ms in enumerate(ms_list):
        w = f"multiscales[{k}]"
        if not isinstance(ms, dict):
            out.append(f"{w} is not an object")
            continue
        if ms.get("version") != "0.4":
            out.append(f"{w}/version {ms.get('version')!r} != '0.4'")
        if ms.get("axes") != want_axes:
            out.append(f"{w}/axes {ms.get('axes')} != z, y, x of type space in nanometer")
        n = len(want_axes)
        group_ct = ms.get("coordinateTransformations", [])
        if not isinstance(group_ct, list) or [t.get("type") if isinstance(t, dict) else None for t in group_ct] not in (
            [],
            ["scale"],
            ["scale", "translation"],
        ):
            out.append(f"{w}/coordinateTransformations: need a scale and at most one translation after it")
        datasets = ms.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            out.append(f"{w}/datasets: not a non-empty list")
            continue
        prev = None
        for i, ds in enumerate(datasets):
            wd = f"{w}/datasets[{i}]"
            path = ds.get("path") if isinstance(ds, dict) else None
            if not isinstance(path, str) or path not in shapes:
                out.append(f"{wd}/path {path!r} names no array of the group")
                continue
            if len(shapes[path]) != n:
                out.append(f"{wd}: array {path} has {len(shapes[path])} dimensions, the axes {n}")
            ct = ds.get("coordinateTransformations")
            types = [t.get("type") if isinstance(t, dict) else None for t in ct] if isinstance(ct, list) else None
            if types not in (["scale"], ["scale", "translation"]):
                out.append(
                    f"{wd}/coordinateTransformations: types {types}, need one scale then at most one translation"
                )
                continue
            scale = ct[0].get("scale")
            if not _numbers(scale, n, positive=True):
                out.append(f"{wd}: scale {scale!r} is not {n} positive numbers")
                continue
            if len(ct) == 2 and not _numbers(ct[1].get("translation"), n):
                out.append(f"{wd}: translation {ct[1].get('translation')!r} is not {n} numbers")
            if prev is not None and any(a < b for a, b in zip(scale, prev, strict=True)):
                out.append(f"{wd}: scale {scale} is finer than the level before it (finest level first)")
            prev = scale
    return out


def _group_problems(root: Path, path: str, exp: dict) -> list[str]:
    """Problems of the OME-NGFF group holding the array ``path`` (``crop<ID>/<class>/s0``) against ``exp``."""
    import zarr
    from csc_common.volumes import parse_multiscales

    group_path, level = path.rsplit("/", 1) if "/" in path else ("", path)
    try:
        grp = zarr.open_group(str(root / group_path), mode="r", zarr_format=2)
        attrs, shapes = dict(grp.attrs), {k: tuple(a.shape) for k, a in grp.arrays()}
    except Exception as exc:  # noqa: BLE001 - any unreadable group is a failure to report
        return [f"group {group_path} unreadable as zarr v2 ({type(exc).__name__}: {exc})"]
    problems = ome_ngff_problems(attrs, shapes)
    if problems:
        return [f"group {group_path}: not valid OME-NGFF 0.4: {p}" for p in problems]
    levels = {lv.path: lv.geometry for lv in parse_multiscales(attrs, shapes, group_path)}
    if level not in levels:
        return [f"group {group_path}: multiscales list no level {level!r}"]
    g = levels[level]
    out = []
    for field_name, have in (("voxel_size", g.voxel_size), ("translation", g.translation)):
        if not _close(have, exp[field_name]):
            out.append(f"group {group_path} level {level}: {field_name} {list(have)} != expected {exp[field_name]}")
    return out


def load_probabilities(manifest_path: Path) -> dict[tuple[int, str], np.ndarray]:
    import zarr

    m = json.loads(manifest_path.read_text())
    root = manifest_path.parent / m["zarr"]
    scale = float(m["encoding"]["scale"])
    return {
        (c["id"], v["name"]): zarr.open_array(str(root / v["path"]), mode="r")[:].astype(np.float64) * scale
        for c in m["crops"]
        for v in c["classes"]
    }


def check_output(
    fixture: Path,
    manifest_path: Path,
    *,
    name: str,
    tol_mean: float = TOL_MEAN,
    tol_p99: float = TOL_P99,
    compare: bool = True,
) -> Report:
    """Every contract check on one predictor output; never raises for a bad output, reports it."""
    import zarr
    from csc_common.errors import CscError
    from csc_common.manifest import read_manifest

    rep = Report(name)
    try:
        m = read_manifest(manifest_path, "predictions")
    except CscError as exc:
        rep.failures.append(f"manifest: {exc}")
        return rep
    root = m.resolve(m.data["zarr"])
    if not root.is_dir():
        rep.failures.append(f"manifest /zarr: {root} does not exist")
        return rep
    dtype, scale = m.data["encoding"]["dtype"], float(m.data["encoding"]["scale"])
    want = expected_volumes(fixture)
    got: dict[tuple[int, str], dict] = {}
    for crop in m.data["crops"]:
        for v in crop["classes"]:
            key = (crop["id"], v["name"])
            if key in got:
                rep.failures.append(f"crop {key[0]} class {key[1]}: listed twice in the manifest")
            got[key] = v
    for key in sorted(set(want) - set(got)):
        rep.failures.append(
            f"crop {key[0]} class {key[1]}: missing (the test manifest lists it and the model predicts it)"
        )
    for key in sorted(set(got) - set(want)):
        rep.failures.append(f"crop {key[0]} class {key[1]}: not expected (not a test-manifest row of a model class)")
    probs: dict[tuple[int, str], np.ndarray] = {}
    for key in sorted(set(got) & set(want)):
        where = f"crop {key[0]} class {key[1]}"
        v, exp = got[key], want[key]
        g = v["geometry"]
        for field_name in ("voxel_size", "translation", "shape"):
            if not _close(g[field_name], exp[field_name]):
                rep.failures.append(
                    f"{where}: manifest geometry {field_name} {g[field_name]} != expected {exp[field_name]}"
                )
        want_path = f"crop{key[0]}/{key[1]}/s0"
        if v["path"] != want_path:
            rep.failures.append(
                f"{where}: path {v['path']!r} != expected {want_path!r} (level s0 of the OME-NGFF "
                f"multiscale group crop{key[0]}/{key[1]})"
            )
        try:
            arr = zarr.open_array(str(root / v["path"]), mode="r", zarr_format=2)
        except Exception as exc:  # noqa: BLE001 - any unreadable array is a failure to report
            rep.failures.append(f"{where}: array {v['path']} unreadable as zarr v2 ({type(exc).__name__}: {exc})")
            continue
        rep.checked += 1
        attrs = dict(arr.attrs)
        if list(arr.shape) != list(exp["shape"]):
            rep.failures.append(f"{where}: array shape {list(arr.shape)} != expected {exp['shape']}")
        for attr in ("voxel_size", "translation"):
            if attr not in attrs or not _close(attrs[attr], exp[attr]):
                rep.failures.append(f"{where}: array attr {attr} {attrs.get(attr)} != expected {exp[attr]}")
        rep.failures += [f"{where}: {p}" for p in _group_problems(root, v["path"], exp)]
        if str(arr.dtype) != dtype:
            rep.failures.append(f"{where}: array dtype {arr.dtype} != encoding.dtype {dtype}")
        p = arr[:].astype(np.float64) * scale
        if not np.isfinite(p).all() or p.min() < -1e-6 or p.max() > 1 + 1e-6:
            rep.failures.append(
                f"{where}: probabilities outside [0, 1] (min {np.nanmin(p):.3g}, max {np.nanmax(p):.3g})"
            )
        probs[key] = p
    if compare and probs:
        ref = load_probabilities(reference(fixture))
        diffs = []
        for key, p in probs.items():
            r = ref.get(key)
            if r is None or r.shape != p.shape:
                continue
            d = np.abs(p - r)
            diffs.append(d.ravel())
            mean, p99 = float(d.mean()), float(np.percentile(d, 99))
            if mean > tol_mean or p99 > tol_p99:
                rep.failures.append(
                    f"crop {key[0]} class {key[1]}: differs from the reference predictor "
                    f"(mean |dp| {mean:.4f} > {tol_mean} or p99 {p99:.4f} > {tol_p99})"
                )
        if diffs:
            d = np.concatenate(diffs)
            rep.stats = {
                "mean_abs_diff": float(d.mean()),
                "p99_abs_diff": float(np.percentile(d, 99)),
                "max_abs_diff": float(d.max()),
            }
    return rep


def check_predictor(
    fixture: Path,
    name: str,
    *,
    command: str | list[str] | None = None,
    image: str | None = None,
    tol_mean: float = TOL_MEAN,
    tol_p99: float = TOL_P99,
) -> Report:
    """Run a predictor on the fixture and check its output."""
    proc = run_predictor(fixture, name, command=command, image=image)
    out = fixture / f"runs/{name}/predictions.json"
    if proc.returncode != 0:
        rep = Report(name)
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        rep.failures.append(f"predictor exited {proc.returncode}: {tail[0]}")
        return rep
    return check_output(fixture, out, name=name, tol_mean=tol_mean, tol_p99=tol_p99)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="conformance", description=__doc__.split("\n\n")[0])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--command", help="predictor command line, e.g. 'csc-predict' or 'python -m csc_predictor'")
    who.add_argument("--image", help="Docker image whose entrypoint is the predictor")
    ap.add_argument("--fixture", help="fixture folder (built there when absent; default: a temp folder)")
    ap.add_argument("--name", default="candidate")
    ap.add_argument("--tol-mean", type=float, default=TOL_MEAN)
    ap.add_argument("--tol-p99", type=float, default=TOL_P99)
    args = ap.parse_args(argv)
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conformance_fixture import build_fixture

    fixture = Path(args.fixture) if args.fixture else Path(tempfile.mkdtemp(prefix="csc-conformance-"))
    if not (fixture / MODEL).is_file():
        build_fixture(fixture)
    rep = check_predictor(
        fixture, args.name, command=args.command, image=args.image, tol_mean=args.tol_mean, tol_p99=args.tol_p99
    )
    print(rep.text())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
