"""A deterministic synthetic CellMap-like dataset, written in the real bucket's layout.

Why: every stage needs data that behaves like the challenge's (multiscale EM,
label crops at their own voxel sizes, arbitrary translations, unannotated
classes, held-apart test truth) without a 36 GB download. The generator writes a
folder that *is* a bucket (``<root>/<ds>/<ds>.zarr/recon-1/...`` plus the
challenge-format CSVs), and the fetcher copies from it through the same code
path it uses for S3.

The scene is analytic: cells are a warped Voronoi tessellation with dark
plasma membranes and bright extracellular space between them; each cell holds a
textured nucleus with a dark envelope, elongated mitochondria with a dark
membrane and striped cristae, small vesicles with a dark rim and thin dark ER
sheets. Because every object is defined in world coordinates (nm), the same
scene is rasterised exactly on any grid: EM s0, label crops at s0/s1, and test
truth at a coarser voxel size. Sample ``i`` of a grid sits at
``translation + i * voxel_size``; a 2x-averaged level shifts its translation by
half the finer voxel size, as the real data does.

Layout written under ``root``::

    <ds>/<ds>.zarr/recon-1/em/fibsem-uint8/s0..s2                 uint8, OME-NGFF 0.4
    <ds>/<ds>.zarr/recon-1/labels/groundtruth/crop<N>/<class>/s0..s1   (training crops only)
    manifest.csv, train_crop_manifest.csv, test_crop_manifest.csv  (challenge CSV formats)
    _truth/ground_truth.zarr/crop<N>/<class>                        (test truth, held apart)
    .synthetic.json                                                 (stamp, written last)
"""

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.fsutil import atomic_dir, atomic_write_text
from csc_common.geometry import Box, Geometry
from csc_common.volumes import create_array, open_group, write_multiscale
from scipy import ndimage
from scipy.spatial import cKDTree

GENERATOR_VERSION = 2
BUCKET_NAME = "csc-synthetic"
STAMP = ".synthetic.json"
TRUTH_PREFIX = "_truth/ground_truth.zarr"
EM_PATH = "recon-1/em/fibsem-uint8"
GT_PATH = "recon-1/labels/groundtruth"

INSTANCE_CLASSES = ("mito", "nuc", "ves")
SEMANTIC_CLASSES = ("ecs", "cyto", "er")
CLASSES = (*SEMANTIC_CLASSES, *INSTANCE_CLASSES)
LABEL_DTYPES = {"mito": "uint32", "nuc": "uint32", "ves": "uint32", "ecs": "uint8", "cyto": "uint8", "er": "uint8"}

Size = Literal["tiny", "demo"]


@dataclass(frozen=True)
class SizeSpec:
    """How big one size of the synthetic data is (physical sizes in nm)."""

    extent_nm: float  # edge of each dataset's EM volume
    crop_nm: float  # edge of each crop (train and test)
    chunk: int  # zarr chunk edge (voxels), EM and labels
    em_levels: int = 3
    label_levels: int = 2


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(extent_nm=512.0, crop_nm=192.0, chunk=16),
    "demo": SizeSpec(extent_nm=1152.0, crop_nm=448.0, chunk=32),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    voxel_size: tuple[float, float, float]
    translation: tuple[float, float, float]
    crop_ids: tuple[int, ...]  # last one is the test crop
    unannotated: dict[int, str] = field(default_factory=dict)  # crop id -> class left out


# Two datasets: isotropic 8 nm and anisotropic 6.96 x 8 x 8 nm, translations off the voxel grid.
DATASETS = (
    DatasetSpec("syn_iso-1", (8.0, 8.0, 8.0), (13.0, 21.0, 5.0), (101, 102, 103, 104, 901), {102: "er"}),
    DatasetSpec("syn_aniso-1", (6.96, 8.0, 8.0), (17.4, 2.0, 35.0), (201, 202, 203, 204, 902), {203: "ves"}),
)


@dataclass(frozen=True)
class CropSpec:
    crop_id: int
    dataset: str
    split: Literal["train", "test"]
    geometry: Geometry  # label s0 grid (train) / main test grid (test)
    classes: tuple[str, ...]
    rows: tuple[CropRow, ...]  # one row per class, the test manifest's geometry per class


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything about the synthetic data that is known before rendering (cheap)."""

    seed: int
    size: str
    em: dict[str, Geometry]  # dataset -> EM s0 geometry
    crops: tuple[CropSpec, ...]

    @property
    def datasets(self) -> list[str]:
        return list(self.em)

    def train_crops(self) -> list[CropSpec]:
        return [c for c in self.crops if c.split == "train"]

    def test_crops(self) -> list[CropSpec]:
        return [c for c in self.crops if c.split == "test"]


def _em_geometry(ds: DatasetSpec, size: SizeSpec) -> Geometry:
    shape = tuple(int(round(size.extent_nm / v)) for v in ds.voxel_size)
    return Geometry(ds.voxel_size, ds.translation, shape)


def _coarser(g: Geometry, factor: int = 2) -> Geometry:
    """The 2x-averaged grid of ``g``: voxel x2, translation + half the finer voxel, shape // 2."""
    vs = tuple(v * factor for v in g.voxel_size)
    tr = tuple(round(t + v * (factor - 1) / 2, 6) for t, v in zip(g.translation, g.voxel_size, strict=False))
    return Geometry(vs, tr, tuple(s // factor for s in g.shape))


def build_spec(seed: int = 0, size: str = "demo") -> SyntheticSpec:
    """Datasets, crops, classes and geometries for ``seed``/``size``, without rendering anything.

    Each crop sits in its own octant of the EM volume (so train and test crops never overlap); among a
    few random positions there, the one that holds mostly cells with organelles wins, so no crop is
    (nearly) all extracellular space.
    """
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; expected one of {', '.join(SIZES)}")
    sz = SIZES[size]
    rng = np.random.default_rng([seed, 7])
    em: dict[str, Geometry] = {}
    crops: list[CropSpec] = []
    for salt, ds in enumerate(DATASETS):
        g = _em_geometry(ds, sz)
        em[ds.name] = g
        scene = build_scene(g, seed, salt)
        crop_shape = np.array([int(round(sz.crop_nm / v)) for v in ds.voxel_size])
        octant = np.array(g.shape) // 2
        slack = np.maximum(octant - crop_shape, 0)
        free = list(range(8))
        starts: dict[int, np.ndarray] = {}
        for cid in (ds.crop_ids[-1], *ds.crop_ids[:-1]):  # the test crop chooses first
            best, best_score, best_oct = None, -np.inf, free[0]
            for o in free:
                corner = np.array([(o >> 2) & 1, (o >> 1) & 1, o & 1]) * octant
                for _ in range(6):
                    start = corner + np.array([rng.integers(0, s + 1) for s in slack])
                    box = g.subgrid([slice(int(a), int(a + n)) for a, n in zip(start, crop_shape, strict=False)]).box
                    sc = _crop_score(scene, box)
                    if sc > best_score:
                        best, best_score, best_oct = start, sc, o
            free.remove(best_oct)
            starts[cid] = best  # type: ignore[assignment]
        for cid in ds.crop_ids:
            start = starts[cid]
            cg = g.subgrid([slice(int(a), int(a + n)) for a, n in zip(start, crop_shape, strict=False)])
            cg = Geometry(cg.voxel_size, tuple(round(t, 6) for t in cg.translation), cg.shape)
            split: Literal["train", "test"] = "test" if cid == ds.crop_ids[-1] else "train"
            classes = tuple(c for c in CLASSES if ds.unannotated.get(cid) != c)
            rows = []
            for c in classes:
                rg = cg
                if split == "test" and c == "nuc":
                    rg = _coarser(cg)  # one test row at a coarser voxel size, as the real manifest has
                rows.append(CropRow(cid, ds.name, c, rg))
            crops.append(CropSpec(cid, ds.name, split, cg, classes, tuple(rows)))
    return SyntheticSpec(seed, size, em, tuple(crops))


# ----------------------------------------------------------------------------------------------
# The analytic scene


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of plane waves, evaluable at any world point."""

    k: np.ndarray  # (n, 3) wave vectors, rad/nm
    phase: np.ndarray  # (n,)
    amp: np.ndarray  # (n,)

    @staticmethod
    def random(rng: np.random.Generator, n: int, wavelength: float, spread: float = 0.3) -> "Waves":
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        lam = wavelength * (1 + spread * rng.uniform(-1, 1, size=n))
        amp = np.full(n, math.sqrt(2.0 / n))  # unit variance
        return Waves(d * (2 * math.pi / lam)[:, None], rng.uniform(0, 2 * math.pi, n), amp)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        out = np.zeros(p.shape[:-1], np.float32)
        for k, ph, a in zip(self.k, self.phase, self.amp, strict=False):
            out += (a * np.sin(p @ k.astype(np.float32) + np.float32(ph))).astype(np.float32)
        return out


@dataclass(frozen=True)
class Ellipsoid:
    cell: int
    centre: np.ndarray  # (3,) nm
    axes: np.ndarray  # (3, 3) rows = unit axes
    radii: np.ndarray  # (3,) nm
    membrane: float  # nm

    def bound(self) -> float:
        return float(self.radii.max())


@dataclass(frozen=True)
class Scene:
    seeds: np.ndarray  # (n, 3)
    is_cell: np.ndarray  # (n,) bool
    brightness: np.ndarray  # (n,) per-cell offset
    warp: tuple[Waves, Waves, Waves]
    er: Waves
    er_zone: Waves
    chromatin: Waves
    objects: dict[str, list[Ellipsoid]]
    gap: float = 44.0  # ecs between two cells, nm
    pm: float = 14.0  # plasma membrane thickness, nm
    er_half: float = 0.22  # |er field| below this is ER (about 22 nm thick)


SPACING = 600.0  # mean distance between cell centres, nm


def _inside_cells(scene: "Scene", p: np.ndarray) -> np.ndarray:
    """For world points ``p`` (..., 3): inside a cell (not ECS, not plasma membrane)."""
    warped = p + 45.0 * np.stack([w(p) for w in scene.warp], -1)
    d, idx = cKDTree(scene.seeds).query(warped.reshape(-1, 3), k=2, workers=-1)
    sep = np.linalg.norm(scene.seeds[idx[:, 1]] - scene.seeds[idx[:, 0]], axis=1)
    h = (d[:, 1] ** 2 - d[:, 0] ** 2) / (2 * sep)
    return (scene.is_cell[idx[:, 0]] & (h > scene.gap / 2 + scene.pm)).reshape(p.shape[:-1])


def _crop_score(scene: "Scene", box: Box) -> float:
    """How good a training/test crop ``box`` is: mostly cells (some ECS), a nucleus, mitochondria."""
    axes = [np.linspace(a, b, 8, dtype=np.float32) for a, b in zip(box.start, box.stop, strict=True)]
    p = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    frac = float(_inside_cells(scene, p).mean())

    def count(cls: str) -> int:
        return sum(
            all(a <= c < b for c, a, b in zip(ob.centre, box.start, box.stop, strict=True)) for ob in scene.objects[cls]
        )

    return -abs(frac - 0.75) + 0.3 * min(count("nuc"), 1) + 0.06 * min(count("mito"), 4) + 0.02 * min(count("ves"), 5)


def _random_axes(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q.T


@functools.lru_cache(maxsize=8)
def build_scene(em: Geometry, seed: int, salt: int) -> Scene:
    """The cells and organelles around the EM volume ``em``, fixed by ``seed``."""
    rng = np.random.default_rng([seed, salt])
    box = em.box.grow([SPACING] * 3)
    n = [max(1, math.ceil((b - a) / SPACING)) for a, b in zip(box.start, box.stop, strict=False)]
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    seeds = np.asarray(box.start) + (grid + 0.5 + rng.uniform(-0.3, 0.3, grid.shape)) * SPACING
    is_cell = rng.uniform(size=len(seeds)) > 0.12
    brightness = rng.normal(0, 6, len(seeds))
    warp = (Waves.random(rng, 3, 700.0), Waves.random(rng, 3, 700.0), Waves.random(rng, 3, 700.0))
    objects: dict[str, list[Ellipsoid]] = {"nuc": [], "mito": [], "ves": []}
    inner = em.box.grow([SPACING * 0.6] * 3)
    for ci, (s, cell) in enumerate(zip(seeds, is_cell, strict=False)):
        if not cell or any(x < a or x > b for x, a, b in zip(s, inner.start, inner.stop, strict=False)):
            continue
        placed: list[tuple[np.ndarray, float]] = []
        if rng.uniform() < 0.92:
            r = SPACING * 0.25 * (1 + rng.uniform(-0.12, 0.12, 3))
            c = s + rng.normal(0, 15, 3)
            objects["nuc"].append(Ellipsoid(ci, c, _random_axes(rng), r, 18.0))
            placed.append((c, float(r.max())))
        for cls, count in (("mito", rng.integers(4, 9)), ("ves", rng.integers(8, 15))):
            for _ in range(int(count)):
                if cls == "mito":  # long axis tangential to the cell centre, so it packs around the nucleus
                    radii = np.array([rng.uniform(60, 105), *rng.uniform(26, 36, 2)])
                else:
                    radii = np.full(3, rng.uniform(17, 28))
                for _try in range(40):
                    d = rng.normal(size=3)
                    d /= np.linalg.norm(d)
                    c = s + d * rng.uniform(0.1, 0.45) * SPACING
                    axes = _random_axes(rng)
                    if cls == "mito":
                        a0 = axes[0] - np.dot(axes[0], d) * d
                        a0 /= np.linalg.norm(a0)
                        a1 = np.cross(d, a0)
                        axes = np.stack([a0, d, a1])
                    rb = float(radii.max())
                    pcs = np.array([pc for pc, _ in placed]).reshape(-1, 3)
                    prs = np.array([pr for _, pr in placed])
                    if np.all(np.sqrt(((pcs - c) ** 2).sum(1)) > prs + float(radii.min()) + 12):
                        objects[cls].append(Ellipsoid(ci, c, axes, radii, 9.0 if cls == "mito" else 8.0))
                        placed.append((c, rb))
                        break
    return Scene(
        seeds=seeds,
        is_cell=is_cell,
        brightness=brightness,
        warp=warp,
        er=Waves.random(rng, 5, 330.0),
        er_zone=Waves.random(rng, 3, 900.0),
        chromatin=Waves.random(rng, 6, 90.0),
        objects=objects,
    )


@dataclass
class Rendered:
    """Everything the scene says about each voxel of one grid."""

    cell: np.ndarray  # int32 seed index of the owning cell interior, -1 elsewhere
    pm: np.ndarray  # bool plasma membrane
    ids: dict[str, np.ndarray]  # class -> uint32 instance ids (nuc, mito, ves)
    shell: dict[str, np.ndarray]  # class -> bool dark membrane of the object
    stripes: np.ndarray  # bool mito cristae
    er: np.ndarray  # bool
    chromatin: np.ndarray  # bool dark patches in the nucleus

    @property
    def interior(self) -> np.ndarray:
        return self.cell >= 0

    def labels(self) -> dict[str, np.ndarray]:
        """Ground-truth arrays per class (instances: ids; semantic: 0/1 uint8)."""
        organelle = (self.ids["nuc"] > 0) | (self.ids["mito"] > 0) | (self.ids["ves"] > 0)
        ecs = (~self.interior) & (~self.pm)
        out = {
            "ecs": ecs.astype(np.uint8),
            "er": self.er.astype(np.uint8),
            "cyto": (self.interior & ~organelle & ~self.er).astype(np.uint8),
        }
        for c in INSTANCE_CLASSES:
            out[c] = self.ids[c].astype(LABEL_DTYPES[c])
        return out


def _points(g: Geometry) -> np.ndarray:
    axes = [
        np.float32(t) + np.arange(n, dtype=np.float32) * np.float32(v)
        for t, n, v in zip(g.translation, g.shape, g.voxel_size, strict=False)
    ]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1)


def render(scene: Scene, g: Geometry) -> Rendered:
    """Rasterise ``scene`` at the sample points of grid ``g`` (vectorised)."""
    p = _points(g)
    shape = tuple(g.shape)
    warped = p + 45.0 * np.stack([w(p) for w in scene.warp], -1)
    tree = cKDTree(scene.seeds)
    d, idx = tree.query(warped.reshape(-1, 3), k=2, workers=-1)
    d, idx = d.astype(np.float32), idx.astype(np.int64)
    sep = np.linalg.norm(scene.seeds[idx[:, 1]] - scene.seeds[idx[:, 0]], axis=1).astype(np.float32)
    h = ((d[:, 1] ** 2 - d[:, 0] ** 2) / (2 * sep)).reshape(shape)  # distance to the Voronoi wall
    owner = idx[:, 0].reshape(shape)
    own_cell = scene.is_cell[owner]
    interior = own_cell & (h > scene.gap / 2 + scene.pm)
    pm = own_cell & (h > scene.gap / 2) & ~interior
    cell = np.where(interior, owner, -1).astype(np.int32)

    ids = {c: np.zeros(shape, np.uint32) for c in INSTANCE_CLASSES}
    shell = {c: np.zeros(shape, bool) for c in INSTANCE_CLASSES}
    stripes = np.zeros(shape, bool)
    for cls in ("nuc", "mito", "ves"):  # priority order: earlier classes win overlaps
        for oid, ob in enumerate(scene.objects[cls], start=1):
            r = ob.bound() + 1.0
            sl = g.slices_for(Box(tuple(ob.centre - r), tuple(ob.centre + r)), clip=True)
            if any(s.stop <= s.start for s in sl):
                continue
            q = p[sl] - ob.centre.astype(np.float32)
            loc = q @ ob.axes.T.astype(np.float32)  # coordinates along the object's axes
            rho = np.sqrt(np.sum((loc / ob.radii.astype(np.float32)) ** 2, -1))
            inside = (rho <= 1.0) & (cell[sl] == ob.cell)
            for other in INSTANCE_CLASSES:
                inside &= ids[other][sl] == 0
            ids[cls][sl][inside] = oid
            mem = inside & (rho >= 1.0 - ob.membrane / float(ob.radii.min()))
            shell[cls][sl] |= mem
            if cls == "mito":
                stripes[sl] |= inside & ~mem & (np.cos(loc[..., 0] * (2 * math.pi / 34.0)) > 0.45)

    organelle = (ids["nuc"] > 0) | (ids["mito"] > 0) | (ids["ves"] > 0)
    er = interior & ~organelle & (np.abs(scene.er(p)) < scene.er_half) & (scene.er_zone(p) > -0.2)
    chromatin = (ids["nuc"] > 0) & ~shell["nuc"] & (scene.chromatin(p) > 0.55)
    return Rendered(cell, pm, ids, shell, stripes, er, chromatin)


def em_image(scene: Scene, r: Rendered, g: Geometry, rng: np.random.Generator) -> np.ndarray:
    """The EM contrast of a rendered grid: dark membranes, bright ECS, textured organelles."""
    img = np.full(r.cell.shape, 205.0, np.float32)  # extracellular space: bright-ish
    interior = r.interior
    img[interior] = 146.0 + scene.brightness[r.cell[interior]]
    img[r.pm] = 62.0
    img[r.er] = 80.0
    nuc = r.ids["nuc"] > 0
    img[nuc] = 114.0
    img[r.chromatin] = 80.0
    img[r.shell["nuc"]] = 50.0
    mito = r.ids["mito"] > 0
    img[mito] = 118.0
    img[r.stripes] = 78.0
    img[r.shell["mito"]] = 52.0
    ves = r.ids["ves"] > 0
    img[ves] = 182.0
    img[r.shell["ves"]] = 66.0
    sigma = [5.0 / v for v in g.voxel_size]
    img = ndimage.gaussian_filter(img, sigma, mode="nearest")
    low = ndimage.gaussian_filter(rng.normal(0, 1, img.shape).astype(np.float32), 8, mode="wrap")
    img *= 1.0 + 0.6 * low / max(float(low.std()), 1e-6) * 0.05
    img += rng.normal(0, 11.0, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def downsample_mean(a: np.ndarray) -> np.ndarray:
    """2x2x2 block mean (trailing odd voxels dropped), rounded back to the input dtype."""
    s = [n // 2 * 2 for n in a.shape]
    b = a[: s[0], : s[1], : s[2]].astype(np.float32)
    b = b.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean(axis=(1, 3, 5))
    return np.rint(b).astype(a.dtype)


# ----------------------------------------------------------------------------------------------
# Writing the bucket


def _crop_url(ds: str, crop_id: int) -> str:
    return f"s3://{BUCKET_NAME}/{ds}/{ds}.zarr/{GT_PATH}/crop{crop_id}"


def _em_url(ds: str) -> str:
    return f"s3://{BUCKET_NAME}/{ds}/{ds}.zarr/{EM_PATH}"


def manifest_csv(spec: SyntheticSpec) -> str:
    """The bucket's manifest.csv (training crops), in the challenge's format."""
    lines = ["crop_number,collection,alignment,crop_url,em_url"]
    lines += [
        f"{c.crop_id},{c.dataset},recon-1,{_crop_url(c.dataset, c.crop_id)},{_em_url(c.dataset)}"
        for c in spec.train_crops()
    ]
    return "\n".join(lines) + "\n"


def generate(root: str | Path, *, seed: int = 0, size: str = "demo") -> SyntheticSpec:
    """Write the synthetic bucket for ``seed``/``size`` into ``root`` (atomically).

    A folder already holding the same generator version, seed and size is left
    as it is (the stamp is written last, so its presence means complete).
    """
    spec = build_spec(seed, size)
    root = Path(root)
    if is_generated(root, seed=seed, size=size):
        return spec
    sz = SIZES[size]
    with atomic_dir(root) as tmp:
        for salt, ds in enumerate(DATASETS):
            em = spec.em[ds.name]
            scene = build_scene(em, seed, salt)
            rng = np.random.default_rng([seed, salt, 99])
            img = em_image(scene, render(scene, em), em, rng)
            levels = [(img, em)]
            for _ in range(sz.em_levels - 1):
                a, g = levels[-1]
                levels.append((downsample_mean(a), _coarser(g)))
            root_grp = open_group(tmp / ds.name / f"{ds.name}.zarr", "w")
            em_grp = root_grp.require_group("recon-1").require_group("em")
            write_multiscale(em_grp, "fibsem-uint8", levels, chunks=(sz.chunk,) * 3)
            gt = root_grp.require_group("recon-1").require_group("labels").require_group("groundtruth")
            truth = open_group(tmp / TRUTH_PREFIX, "a")
            for crop in (c for c in spec.crops if c.dataset == ds.name):
                if crop.split == "train":
                    grids = [crop.geometry]
                    for _ in range(sz.label_levels - 1):
                        grids.append(_coarser(grids[-1]))
                    rendered = [render(scene, g).labels() for g in grids]
                    cg = gt.require_group(f"crop{crop.crop_id}")
                    for cls in crop.classes:
                        write_multiscale(
                            cg,
                            cls,
                            [(r[cls], g) for r, g in zip(rendered, grids, strict=False)],
                            chunks=(sz.chunk,) * 3,
                        )
                else:
                    tg = truth.require_group(f"crop{crop.crop_id}")
                    by_grid: dict[Geometry, dict[str, np.ndarray]] = {}
                    for row in crop.rows:
                        if row.geometry not in by_grid:
                            by_grid[row.geometry] = render(scene, row.geometry).labels()
                        lab = by_grid[row.geometry][row.class_label]
                        g = row.geometry
                        arr = create_array(
                            tg,
                            row.class_label,
                            shape=g.shape,
                            dtype=lab.dtype,
                            chunks=(sz.chunk,) * 3,
                            attrs={
                                "voxel_size": list(g.voxel_size),
                                "translation": list(g.translation),
                                "shape": list(g.shape),
                            },
                        )
                        arr[...] = lab
        atomic_write_text(tmp / "manifest.csv", manifest_csv(spec))
        atomic_write_text(
            tmp / "train_crop_manifest.csv", write_crop_manifest(r for c in spec.train_crops() for r in c.rows)
        )
        atomic_write_text(
            tmp / "test_crop_manifest.csv", write_crop_manifest(r for c in spec.test_crops() for r in c.rows)
        )
        atomic_write_text(tmp / STAMP, json.dumps(_stamp(seed, size), indent=2) + "\n")
    return spec


def _stamp(seed: int, size: str) -> dict[str, object]:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size, "bucket": BUCKET_NAME}


def is_generated(root: str | Path, *, seed: int, size: str) -> bool:
    """True when ``root`` holds a complete bucket of this generator version, seed and size."""
    try:
        return json.loads((Path(root) / STAMP).read_text()) == _stamp(seed, size)
    except (OSError, ValueError):
        return False


def crop_rows(spec: SyntheticSpec, split: str | None = None) -> Sequence[CropRow]:
    """Crop-manifest rows of the spec (optionally one split)."""
    return [r for c in spec.crops if split in (None, c.split) for r in c.rows]
