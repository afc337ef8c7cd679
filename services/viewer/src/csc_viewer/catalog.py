"""What there is to look at: every volume the pipeline's manifests point to.

Reads manifests (following their ``inputs`` back to the dataset manifest, so
``csc-view --manifest DATA/processed.json`` still finds the EM) and turns
them into ``Volume`` records: which dataset and crop, which kind of output
(``em``, ``gt``, ``predictions``, ``processed``, ``submission``), which class,
and where each scale level sits in the world. This module is the viewer's
only reader of manifests and zarr metadata; the layer and montage code works
on the records alone.
"""

import fnmatch
import logging
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zarr
from csc_common import views
from csc_common.classes import ClassKind
from csc_common.cli import parse_crop_id, parse_list
from csc_common.errors import InputError, ManifestError
from csc_common.geometry import Geometry
from csc_common.views import (
    DatasetEntry,
    DatasetView,
    EmLevel,
    PredictionsView,
    ProcessedView,
    ScoresView,
    SubmissionView,
)
from csc_common.volumes import Level, array_geometry, open_array, open_group, read_levels

log = logging.getLogger("csc.viewer")

Kind = Literal["em", "gt", "predictions", "processed", "submission"]
KINDS: tuple[str, ...] = ("em", "gt", "predictions", "processed", "submission")
DEFAULT_KINDS = "em,gt,predictions,processed"
# The manifest kinds shown, in the order they are read (the dataset first: it names the crops).
VIEWABLE = (DatasetView, PredictionsView, ProcessedView, SubmissionView, ScoresView)
# Names `csc-view` looks for in --data when no manifest is given (the Makefile's targets).
STANDARD_MANIFESTS = ("dataset.json", "predictions.json", "processed.json", "submission.json", "scores.json")


@dataclass(frozen=True)
class Volume:
    """One viewable volume: an EM pyramid or one class of one crop of one stage's output.

    ``store`` is a zarr folder or a zip holding one; ``levels`` are array paths
    inside it with their world geometry (finest first). ``scale`` turns stored
    values into probabilities (predictions' ``encoding.scale``).
    """

    dataset: str
    kind: str
    crop: int | None
    name: str
    class_kind: ClassKind | None  # None for the EM, and for a class no manifest records
    store: Path
    levels: tuple[Level, ...]
    scale: float = 1.0

    @property
    def geometry(self) -> Geometry:
        return self.levels[0].geometry


@dataclass
class Catalog:
    """Every volume found, plus which crops are test crops (for ``-c test``)."""

    volumes: list[Volume] = field(default_factory=list)
    test_crops: set[int] = field(default_factory=set)
    crop_datasets: dict[int, str] = field(default_factory=dict)
    class_kinds: dict[str, ClassKind] = field(default_factory=dict)
    scores: ScoresView | None = None

    def datasets(self) -> list[str]:
        return sorted({v.dataset for v in self.volumes})


@dataclass(frozen=True)
class Selection:
    """The original's ``-d/-c/-C/-k`` filters: comma lists with ``*`` globs.

    As in the original, the EM is always shown (``em`` may be listed in
    ``-k`` but need not be); ``em=False`` (``--no-em``) hides it.
    """

    datasets: tuple[str, ...] = ("*",)
    crops: tuple[str, ...] = ("*",)
    classes: tuple[str, ...] = ("*",)
    kinds: tuple[str, ...] = tuple(DEFAULT_KINDS.split(","))
    em: bool = True

    @classmethod
    def parse(
        cls, *, datasets: str = "*", crops: str = "*", classes: str = "*", kinds: str = DEFAULT_KINDS, em: bool = True
    ) -> "Selection":
        def split(text: str) -> tuple[str, ...]:
            return tuple(parse_list(text)) or ("*",)

        kind_items = split(kinds)
        if kind_items == ("*",):
            kind_items = KINDS
        bad = [k for k in kind_items if k not in KINDS]
        if bad:
            raise InputError(f"--kinds: unknown kind(s) {', '.join(bad)}; expected a comma list of {', '.join(KINDS)}")
        crop_items = tuple(c.removeprefix("crop") for c in split(crops))
        return cls(split(datasets), crop_items, split(classes), kind_items, em)

    def wants_dataset(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.datasets)

    def wants_class(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.classes)

    def wants_crop(self, crop: int, *, test_crops: set[int]) -> bool:
        for p in self.crops:
            if p in ("all", "*") or (p == "test" and crop in test_crops) or (p == "train" and crop not in test_crops):
                return True
            if fnmatch.fnmatchcase(str(crop), p):
                return True
        return False

    def apply(self, catalog: Catalog) -> list[Volume]:
        """The volumes this selection shows (EM only for datasets that keep a crop, or for ``-c test``)."""
        chosen = [
            v
            for v in catalog.volumes
            if v.kind != "em"
            and v.kind in self.kinds
            and self.wants_dataset(v.dataset)
            and v.crop is not None
            and self.wants_crop(v.crop, test_crops=catalog.test_crops)
            and self.wants_class(v.name)
        ]
        # EM of every dataset holding a selected crop, even with no other layer (upstream: `-c test` shows the
        # test crops' EM); all datasets when no crop filter is given
        keep_ds = {v.dataset for v in chosen}
        keep_ds |= {ds for c, ds in catalog.crop_datasets.items() if self.wants_crop(c, test_crops=catalog.test_crops)}
        if self.crops == ("*",):
            keep_ds |= {v.dataset for v in catalog.volumes if v.kind == "em"}
        em = [
            v
            for v in catalog.volumes
            if v.kind == "em" and self.em and v.dataset in keep_ds and self.wants_dataset(v.dataset)
        ]
        return em + chosen


# -- manifests ------------------------------------------------------------------


def find_manifests(paths: Sequence[str | Path], data_dir: str | Path) -> list[Path]:
    """The manifests to read: those given (a folder stands for its standard ones), or those in ``data_dir``."""
    found: list[Path] = []
    for p in [Path(x) for x in paths] or [Path(data_dir)]:
        if p.is_dir():
            in_dir = [p / n for n in STANDARD_MANIFESTS if (p / n).is_file()]
            if not in_dir:
                raise InputError(f"{p}: no manifests given and none of {', '.join(STANDARD_MANIFESTS)} found there")
            found += in_dir
        elif not paths:
            raise InputError(f"{p}: --data folder not found")
        else:
            found.append(p)
    return found


def load_manifests(paths: Iterable[Path], *, follow_inputs: bool = True) -> list[views.View]:
    """Load manifests and (transitively) the manifests they name as inputs; the viewable ones, one per file.

    The manifests given must be valid; an input that is gone or invalid
    (a stale model manifest, say) is skipped with a warning.
    """
    seen: dict[Path, views.View | None] = {}
    todo = [Path(p) for p in paths]
    explicit = {p.resolve() for p in todo}
    while todo:
        p = todo.pop(0)
        key = p.resolve()
        if key in seen:
            continue
        if key in explicit:
            v = views.load_any(p, VIEWABLE)
        else:
            try:
                v = views.load_any(p)
            except ManifestError as exc:
                log.warning("input manifest skipped: %s", exc)
                seen[key] = None
                continue
        seen[key] = v
        if follow_inputs:
            todo += v.input_manifests()
    return [v for v in seen.values() if isinstance(v, VIEWABLE)]


def build_catalog(manifests: Sequence[views.View]) -> Catalog:
    """Volumes of all manifests; a volume a manifest names but the disk lacks is an InputError.

    Class kinds come from the manifests: each class entry carries its own, and
    arrays placed by their attrs alone (the test truth, a submission zip) take
    the kind the other manifests record for that class name.
    """
    cat = Catalog()
    ordered = sorted(manifests, key=lambda v: VIEWABLE.index(type(v)))
    for v in ordered:
        if isinstance(v, DatasetView | PredictionsView | ProcessedView):
            cat.class_kinds.update({c.name: c.kind for crop in v.crops for c in crop.classes})
    for v in ordered:
        if isinstance(v, DatasetView):
            _add_dataset(cat, v)
        elif isinstance(v, PredictionsView):
            _add_crop_volumes(cat, v, "predictions", v.encoding.scale)
        elif isinstance(v, ProcessedView):
            _add_crop_volumes(cat, v, "processed")
        elif isinstance(v, SubmissionView):
            _add_submission(cat, v)
        elif isinstance(v, ScoresView):
            cat.scores = v
    return cat


def _add_dataset(cat: Catalog, m: DatasetView) -> None:
    zarrs: dict[str, Path] = {}
    for ds in m.datasets:
        zarrs[ds.name] = ds.zarr
        em_group = ds.zarr / ds.em_path
        if (em_group / ".zattrs").is_file():
            levels = [Level(f"{ds.em_path}/{lv.path}", lv.geometry) for lv in read_levels(em_group)]
        else:
            levels = [_em_level_from_manifest(ds, lv, m.where) for lv in ds.levels]
        cat.volumes.append(Volume(ds.name, "em", None, "fibsem", None, ds.zarr, tuple(levels)))
    for crop in m.crops:
        if crop.id is None:
            continue
        cat.crop_datasets[crop.id] = crop.dataset
        if crop.split == "test":
            cat.test_crops.add(crop.id)
        for c in crop.classes:
            if not c.path:
                continue
            root = zarrs.get(crop.dataset)
            if root is None:
                raise InputError(f"{m.where}: crop {crop.id} names dataset {crop.dataset!r}, not in /datasets")
            levels = read_levels(root / c.path)
            cat.volumes.append(
                Volume(
                    crop.dataset,
                    "gt",
                    crop.id,
                    c.name,
                    c.kind,
                    root,
                    tuple(Level(f"{c.path}/{lv.path}", lv.geometry) for lv in levels),
                )
            )
    if m.truth is not None:
        _add_test_truth(cat, m.truth)


def _em_level_from_manifest(ds: DatasetEntry, lv: EmLevel, where: str) -> Level:
    for path in (f"{ds.em_path}/{lv.path}", lv.path):
        if (ds.zarr / path / ".zarray").is_file():
            return Level(path, lv.geometry)
    raise InputError(f"{where}: EM level {lv.path!r} not found under {ds.zarr / ds.em_path}")


def _add_test_truth(cat: Catalog, truth: Path) -> None:
    """The held-apart test truth: ``crop<N>/<class>`` arrays with voxel_size/translation attrs."""
    _add_crop_arrays(cat, open_group(truth), truth, "gt", str(truth), "is not a crop of the dataset manifest")


def _add_crop_arrays(cat: Catalog, grp: Any, source: Path, kind: str, where: str, unknown: str) -> None:
    """``crop<N>/<class>`` arrays placed by their own attrs (the truth's and the submission's layout)."""
    for crop_name, crop_grp in sorted(grp.groups()):
        crop_id = _crop_id(crop_name)
        if crop_id is None:
            continue
        dataset = cat.crop_datasets.get(crop_id)
        if dataset is None:
            log.warning("%s: %s %s; not shown", where, crop_name, unknown)
            continue
        for cls, arr in sorted(crop_grp.arrays()):
            geom = array_geometry(arr, f"{where}/{crop_name}/{cls}")
            if geom is None:
                raise InputError(f"{where}: {crop_name}/{cls} has no voxel_size attribute")
            cat.volumes.append(
                Volume(
                    dataset, kind, crop_id, cls, cat.class_kinds.get(cls), source, (Level(f"{crop_name}/{cls}", geom),)
                )
            )


def _add_crop_volumes(cat: Catalog, m: PredictionsView | ProcessedView, kind: str, scale: float = 1.0) -> None:
    root = m.zarr
    if not root.is_dir():
        raise InputError(f"{m.where}: /zarr: {root} not found")
    for crop in m.crops:
        if crop.id is None:
            continue  # a whole-dataset region: not a crop to show
        cat.crop_datasets.setdefault(crop.id, crop.dataset)
        for c in crop.classes:
            if c.path is None:
                raise InputError(f"{m.where}: crop {crop.id} class {c.name} has no path")
            levels = _class_levels(root, c.path, c.geometry)
            cat.volumes.append(Volume(crop.dataset, kind, crop.id, c.name, c.kind, root, levels, scale))


def _class_levels(root: Path, path: str, fallback: Geometry) -> tuple[Level, ...]:
    """Levels of one predictions/processed class.

    ``path`` names an array (``crop<N>/<class>/s0``, level s0 of an OME-NGFF group, or a plain array of the
    older layout), placed by its own attrs (else the manifest geometry); or an OME-NGFF multiscale group.
    """
    node = root / path
    if not (node / ".zarray").is_file() and (node / ".zattrs").is_file():
        return tuple(Level(f"{path}/{lv.path}", lv.geometry) for lv in read_levels(node))
    arr = open_array(node)
    geom = array_geometry(arr, str(node)) or fallback
    if tuple(arr.shape) != geom.shape:
        raise InputError(f"{node}: shape {tuple(arr.shape)} differs from its geometry {geom.shape}")
    return (Level(path, geom),)


def _add_submission(cat: Catalog, m: SubmissionView) -> None:
    """A submission zip: read its arrays' own voxel_size/translation attrs, as the evaluator does."""
    _add_crop_arrays(
        cat,
        open_zip_group(m.zip.path),
        m.zip.path,
        "submission",
        str(m.zip.path),
        "belongs to no known dataset (give the dataset manifest too)",
    )


def _crop_id(name: str) -> int | None:
    """The id of a ``crop<N>`` group; None for any other name (not a crop, skipped)."""
    if not name.startswith("crop"):
        return None
    try:
        return parse_crop_id(name)
    except InputError:
        return None


# -- array access ---------------------------------------------------------------


def open_zip_group(path: Path) -> zarr.Group:
    """A read-only zarr v2 group inside a zip (the submission format)."""
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: submission zip not found or not a zip file")
    store = zarr.storage.ZipStore(str(path), mode="r")
    try:
        return zarr.open_group(store, mode="r", zarr_format=2)
    except Exception as exc:  # noqa: BLE001 - any zarr failure is bad input here
        raise InputError(f"{path}: not a zarr v2 group in a zip ({exc})") from None


_ZIP_GROUPS: dict[Path, zarr.Group] = {}


def open_level(volume: Volume, level: Level) -> zarr.Array:
    """The zarr array of one level of ``volume`` (lazy; zip stores opened once)."""
    if volume.store.suffix == ".zip":
        grp = _ZIP_GROUPS.get(volume.store)
        if grp is None:
            grp = _ZIP_GROUPS[volume.store] = open_zip_group(volume.store)
        node = grp.get(level.path)
        if not isinstance(node, zarr.Array):
            raise InputError(f"{volume.store}: array {level.path} not found")
        return node
    return open_array(volume.store / level.path)
