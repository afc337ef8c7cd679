"""Typed views of every manifest kind: what stages read and write, instead of raw dicts.

One ``load(path, kind)`` reads a manifest file, validates it against
``schemas/<kind>.schema.json`` (errors name the file and the JSON pointer) and
returns a frozen view whose paths are resolved, whose grids are
:class:`~csc_common.geometry.Geometry` values and whose classes are
:class:`ClassEntry` items that carry their kind. ``save(view, path)`` writes
the same view back through ``view.to_json(path)`` — paths made relative to the
manifest's folder, then the same schema validation — atomically.

The views expose the facts later stages use (nnU-Net's ``PlansManager``
"exposes the things in the plans instead of hiding them in a dict" is the
model). What a stage records only for people (timings, counts, parameters)
travels in ``details``: written and kept, read by no other stage.

Class meaning has one owner: the dataset manifest records each class's kind
(the challenge's table, overridable once at fetch); every later manifest
repeats it per class, so no stage re-derives it from a name.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast

from csc_common.classes import ClassKind
from csc_common.crops import CropRow, read_crop_manifest
from csc_common.errors import InputError, ManifestError
from csc_common.fsutil import sha256_file
from csc_common.geometry import Box, Geometry, Shape3, Vec3, shape3, vec3
from csc_common.manifest import SCHEMA_VERSION, producer, read_manifest, relpath, validate, write_manifest
from csc_common.volumes import Level

Split = Literal["train", "test"]
V = TypeVar("V", bound="View")
_HEADER = ("kind", "schema_version", "producer", "inputs")


def _rel(p: Path, at: Path) -> str:
    return relpath(p, at)


# ---------------------------------------------------------------- small parts
@dataclass(frozen=True)
class Artifact:
    """A file a manifest points at: absolute path, and its size + sha256 when recorded."""

    path: Path
    sha256: str | None = None
    bytes: int | None = None

    @classmethod
    def of(cls, path: str | Path, *, digest: bool = True) -> "Artifact":
        """An artifact for an existing file (size and, with ``digest``, sha256 measured now)."""
        p = Path(path).resolve()
        if not p.is_file():
            return cls(p)
        return cls(p, sha256_file(p) if digest else None, p.stat().st_size)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], base: Path) -> "Artifact":
        return cls((base / d["path"]).resolve(), d.get("sha256"), d.get("bytes"))

    def to_json(self, at: Path) -> dict[str, Any]:
        out: dict[str, Any] = {"path": _rel(self.path, at)}
        if self.bytes is not None:
            out["bytes"] = self.bytes
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out

    def verify(self, where: str) -> Path:
        """The path, after checking the file exists and (when recorded) its sha256; InputError otherwise."""
        if not self.path.is_file():
            raise InputError(f"{where}: {self.path} not found")
        if self.sha256 is not None and sha256_file(self.path) != self.sha256:
            raise InputError(
                f"{self.path}: sha256 does not match the one recorded in {where}; the file changed after it was written"
            )
        return self.path


@dataclass(frozen=True)
class Header:
    """Who wrote a manifest and from what: the ``producer`` block and the ``inputs`` provenance list."""

    producer: Mapping[str, Any]
    inputs: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def new(
        cls, stage: str, started: str, *, inputs: Iterable[Mapping[str, Any]] = (), args: list[str] | None = None
    ) -> "Header":
        return cls(producer(stage, started, args), tuple(inputs))


@dataclass(frozen=True)
class VoxelCounts:
    """How much of a ground-truth class volume (its finest level) is annotated, and how much is the class.

    ``annotated``: voxels whose label is known (present or absent); ``present``:
    voxels labelled as the class. Recorded by the fetcher from the label
    array's metadata (``cellmap.annotation.complement_counts``) or, where that is
    absent, from the contents it copied; read by ``csc get-counts``.
    """

    annotated: int
    present: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "VoxelCounts":
        return cls(int(d["annotated"]), int(d["present"]))

    def to_json(self) -> dict[str, int]:
        return {"annotated": self.annotated, "present": self.present}


@dataclass(frozen=True)
class ClassEntry:
    """One class volume: name, kind, grid, and where its array is (inside the stage's zarr)."""

    name: str
    kind: ClassKind
    geometry: Geometry
    path: str | None = None
    dtype: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    counts: VoxelCounts | None = None  # ground truth of training crops (dataset manifests)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], kinds: Mapping[str, ClassKind] | None = None) -> "ClassEntry":
        from csc_common.classes import class_kind

        kind = d.get("kind") or (kinds or {}).get(d["name"]) or class_kind(d["name"])
        rest = {k: v for k, v in d.items() if k not in ("name", "kind", "geometry", "path", "dtype", "counts")}
        counts = VoxelCounts.from_json(d["counts"]) if d.get("counts") is not None else None
        return cls(d["name"], kind, Geometry.from_json(d["geometry"]), d.get("path"), d.get("dtype"), rest, counts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.path is not None:
            out["path"] = self.path
        out["geometry"] = self.geometry.to_json()
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.counts is not None:
            out["counts"] = self.counts.to_json()
        return {**out, **self.details}


@dataclass(frozen=True)
class CropEntry:
    """One crop (or, with ``id`` None, a region of a dataset) and its class volumes."""

    id: int | None
    dataset: str
    classes: tuple[ClassEntry, ...]
    split: Split | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``crop<N>``, the crop's group name in every zarr (the dataset's name for a region)."""
        return f"crop{self.id}" if self.id is not None else self.dataset

    def get(self, name: str) -> ClassEntry | None:
        return next((c for c in self.classes if c.name == name), None)

    @property
    def box(self) -> Box:
        """The world box covering every class volume of the crop."""
        return Box.union_all(c.geometry.box for c in self.classes)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], kinds: Mapping[str, ClassKind] | None = None) -> "CropEntry":
        rest = {k: v for k, v in d.items() if k not in ("id", "dataset", "classes", "split")}
        classes = tuple(ClassEntry.from_json(c, kinds) for c in d["classes"])
        return cls(d.get("id"), d["dataset"], classes, d.get("split"), rest)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        out["dataset"] = self.dataset
        if self.split is not None:
            out["split"] = self.split
        out["classes"] = [c.to_json() for c in self.classes]
        return {**out, **self.details}


def _crop_lists(data: Mapping[str, Any], kinds: Mapping[str, ClassKind] | None = None) -> tuple[CropEntry, ...]:
    crops = [CropEntry.from_json(c, kinds) for c in data.get("crops", [])]
    crops += [CropEntry.from_json({**v, "id": None}, kinds) for v in data.get("volumes", [])]
    return tuple(crops)


def _crops_json(crops: Sequence[CropEntry]) -> dict[str, Any]:
    out: dict[str, Any] = {"crops": [c.to_json() for c in crops if c.id is not None]}
    regions = [c.to_json() for c in crops if c.id is None]
    if regions:
        out["volumes"] = regions
    return out


@dataclass(frozen=True)
class EmLevel:
    """One EM scale level of a dataset: its path inside the EM group, its grid, whether it was fetched."""

    path: str
    geometry: Geometry
    fetched: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, **self.geometry.to_json()}
        if self.fetched is not None:
            out["fetched"] = self.fetched
        return out


@dataclass(frozen=True)
class DatasetEntry:
    """One EM dataset of a dataset manifest: its zarr, the EM group inside it and the EM levels."""

    name: str
    zarr: Path
    em_path: str
    levels: tuple[EmLevel, ...]

    def level_array(self, level: EmLevel | str) -> Path:
        """Folder of a level's zarr array."""
        path = level.path if isinstance(level, EmLevel) else level
        return self.zarr / self.em_path / path

    def as_levels(self) -> list[Level]:
        """The levels as ``volumes.Level`` (path relative to the EM group), for ``choose_level``."""
        return [Level(lv.path, lv.geometry) for lv in self.levels]

    @classmethod
    def from_json(cls, d: Mapping[str, Any], base: Path) -> "DatasetEntry":
        em_path = str(d["em"]["path"]).rstrip("/")
        levels = []
        for lv in d["em"]["levels"]:
            path = str(lv["path"]).removeprefix(em_path + "/")
            levels.append(EmLevel(path, Geometry.from_json(lv), lv.get("fetched")))
        return cls(d["name"], (base / d["zarr"]).resolve(), em_path, tuple(levels))

    def to_json(self, at: Path) -> dict[str, Any]:
        return {
            "name": self.name,
            "zarr": _rel(self.zarr, at),
            "em": {"path": self.em_path, "levels": [lv.to_json() for lv in self.levels]},
        }


@dataclass(frozen=True)
class InputSpec:
    """What a network takes: channels, patch shape (zyx voxels), voxel size (nm), input = raw * scale + offset."""

    channels: int
    patch_shape: Shape3
    voxel_size: Vec3
    scale: float
    offset: float = 0.0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "InputSpec":
        norm = d["normalization"]
        return cls(
            int(d["channels"]),
            shape3(d["patch_shape"], "patch_shape"),
            vec3(d["voxel_size"], "voxel_size"),
            float(norm["scale"]),
            float(norm["offset"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "patch_shape": list(self.patch_shape),
            "voxel_size": list(self.voxel_size),
            "normalization": {"scale": self.scale, "offset": self.offset},
        }


@dataclass(frozen=True)
class ValidShape:
    """The input shapes a network accepts: each axis a multiple of ``multiple`` and at least ``min``."""

    multiple: Shape3
    min: Shape3

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ValidShape":
        return cls(shape3(d["multiple"], "valid_shape.multiple"), shape3(d["min"], "valid_shape.min"))

    def to_json(self) -> dict[str, Any]:
        return {"multiple": list(self.multiple), "min": list(self.min)}

    def accepts(self, shape: Sequence[int]) -> bool:
        return all(
            s >= max(lo, 1) and s % max(m, 1) == 0 for s, m, lo in zip(shape, self.multiple, self.min, strict=True)
        )


# ---------------------------------------------------------------- views
@dataclass(frozen=True, kw_only=True)
class View:
    """Common part of every view: where the manifest lives (None until saved) and its header."""

    KIND: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[str, ...]] = ()  # top-level keys the view models (the rest are details)

    header: Header
    details: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def dir(self) -> Path:
        if self.path is None:
            raise ManifestError(f"this {self.KIND} manifest has not been written yet")
        return self.path.parent

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else f"<new {self.KIND} manifest>"

    def input_manifests(self) -> list[Path]:
        """The inputs of this manifest that are manifests themselves (``*.json``), as absolute paths."""
        paths = (str(item.get("path", "")) for item in self.header.inputs)
        return [(self.dir / p).resolve() for p in paths if p.endswith(".json")]

    def ref(self, output_manifest: str | Path) -> dict[str, str]:
        """Provenance entry for this manifest as an input of the manifest at ``output_manifest``."""
        if self.path is None:
            raise ManifestError(f"a {self.KIND} manifest must be written before it can be an input")
        return {"kind": self.KIND, "path": relpath(self.path, output_manifest), "sha256": sha256_file(self.path)}

    def body(self, at: Path) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self, at: str | Path) -> dict[str, Any]:
        """The manifest document for a file at ``at`` (paths relative to its folder), validated."""
        p = Path(at).resolve()
        body = self.body(p)
        clash = sorted(set(self.details) & (set(body) | set(_HEADER)))
        if clash:
            raise ManifestError(f"{self.KIND} manifest: details {clash} collide with modelled fields")
        data = {
            "kind": self.KIND,
            "schema_version": SCHEMA_VERSION,
            "producer": dict(self.header.producer),
            "inputs": [dict(i) for i in self.header.inputs],
            **body,
            **self.details,
        }
        validate(data, self.KIND, str(p))
        return data

    @classmethod
    def parse(cls: type[V], data: Mapping[str, Any], path: Path) -> V:
        raise NotImplementedError

    @classmethod
    def _common(cls, data: Mapping[str, Any], path: Path) -> dict[str, Any]:
        """The keyword arguments every view takes: header, details (the unmodelled keys) and path."""
        header = Header(data["producer"], tuple(data.get("inputs", [])))
        details = {k: v for k, v in data.items() if k not in _HEADER and k not in cls.FIELDS}
        return {"header": header, "details": details, "path": path}


@dataclass(frozen=True, kw_only=True)
class DatasetView(View):
    """Fetched EM and ground-truth crops (fetcher output)."""

    KIND: ClassVar[str] = "dataset"
    FIELDS: ClassVar[tuple[str, ...]] = ("source", "datasets", "crops", "test_manifest", "truth")

    source: str
    datasets: tuple[DatasetEntry, ...]
    crops: tuple[CropEntry, ...]
    test_manifest: Path
    truth: Path | None = None

    def dataset(self, name: str) -> DatasetEntry:
        """The dataset called ``name``; InputError naming the manifest and the known names otherwise."""
        for d in self.datasets:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.datasets) or "none"
        raise InputError(f"{self.where}: dataset {name!r} is not in /datasets ({known})")

    def crops_of(self, split: Split) -> list[CropEntry]:
        return [c for c in self.crops if c.split == split]

    def test_rows(self) -> list[CropRow]:
        """The rows of the selected test crops' crop manifest (the submission's geometry)."""
        return read_crop_manifest(self.test_manifest)

    def class_kinds(self) -> dict[str, ClassKind]:
        """Kind of every class the manifest names (the one record of class meaning)."""
        return {c.name: c.kind for crop in self.crops for c in crop.classes}

    def body(self, at: Path) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "datasets": [d.to_json(at) for d in self.datasets],
            "crops": [c.to_json() for c in self.crops],
            "test_manifest": _rel(self.test_manifest, at),
        }
        if self.truth is not None:
            out["truth"] = _rel(self.truth, at)
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "DatasetView":
        base = path.parent
        return cls(
            **cls._common(data, path),
            source=data["source"],
            datasets=tuple(DatasetEntry.from_json(d, base) for d in data["datasets"]),
            crops=_crop_lists(data),
            test_manifest=(base / data["test_manifest"]).resolve(),
            truth=(base / data["truth"]).resolve() if data.get("truth") else None,
        )


@dataclass(frozen=True, kw_only=True)
class ModelView(View):
    """A trained network (trainer output): architecture, input spec, classes and their kinds, checkpoints."""

    KIND: ClassVar[str] = "model"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "name", "architecture", "input", "classes", "class_kinds", "valid_shape", "checkpoint",
        "latest_checkpoint", "sample_input",
    )  # fmt: skip

    name: str
    architecture: Mapping[str, Any]
    input: InputSpec
    classes: tuple[str, ...]
    class_kinds: Mapping[str, ClassKind]
    checkpoint: Artifact
    valid_shape: ValidShape | None = None
    latest_checkpoint: Artifact | None = None
    sample_input: Artifact | None = None

    @property
    def dims(self) -> int:
        return int(self.architecture["dims"])

    def body(self, at: Path) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "architecture": dict(self.architecture),
            "input": self.input.to_json(),
            "classes": list(self.classes),
            "class_kinds": dict(self.class_kinds),
            "checkpoint": self.checkpoint.to_json(at),
        }
        if self.valid_shape is not None:
            out["valid_shape"] = self.valid_shape.to_json()
        if self.latest_checkpoint is not None:
            out["latest_checkpoint"] = self.latest_checkpoint.to_json(at)
        if self.sample_input is not None:
            out["sample_input"] = self.sample_input.to_json(at)
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "ModelView":
        base = path.parent
        return cls(
            **cls._common(data, path),
            name=data["name"],
            architecture=data["architecture"],
            input=InputSpec.from_json(data["input"]),
            classes=tuple(data["classes"]),
            class_kinds=_kinds(data),
            checkpoint=Artifact.from_json(data["checkpoint"], base),
            valid_shape=ValidShape.from_json(data["valid_shape"]) if data.get("valid_shape") else None,
            latest_checkpoint=_artifact(data.get("latest_checkpoint"), base),
            sample_input=_artifact(data.get("sample_input"), base),
        )


def _kinds(data: Mapping[str, Any]) -> dict[str, ClassKind]:
    from csc_common.classes import class_kind

    recorded = data.get("class_kinds") or {}
    return {c: recorded.get(c) or class_kind(c) for c in data["classes"]}


def _artifact(d: Mapping[str, Any] | None, base: Path) -> Artifact | None:
    return Artifact.from_json(d, base) if d else None


@dataclass(frozen=True, kw_only=True)
class OnnxModelView(View):
    """A verified ONNX export (exporter output): the file, its tensor names, input spec, classes, valid shapes."""

    KIND: ClassVar[str] = "onnx-model"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "name", "onnx", "opset", "input_name", "output_name", "input", "classes", "class_kinds", "valid_shape",
        "verification", "architecture", "test_tensors",
    )  # fmt: skip

    name: str
    onnx: Artifact
    opset: int
    input: InputSpec
    classes: tuple[str, ...]
    class_kinds: Mapping[str, ClassKind]
    valid_shape: ValidShape
    verification: Mapping[str, Any]
    input_name: str | None = None
    output_name: str | None = None
    architecture: Mapping[str, Any] | None = None
    test_input: Artifact | None = None
    test_expected: Artifact | None = None
    test_source: str | None = None

    @property
    def model_manifest(self) -> Path | None:
        """The trainer's ``model`` manifest this export came from (its input of kind ``model``)."""
        for item in self.header.inputs:
            if item.get("kind") == "model" and self.path is not None:
                return (self.dir / str(item["path"])).resolve()
        return None

    def body(self, at: Path) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "onnx": self.onnx.to_json(at), "opset": self.opset}
        if self.input_name is not None:
            out["input_name"] = self.input_name
        if self.output_name is not None:
            out["output_name"] = self.output_name
        out |= {
            "input": self.input.to_json(),
            "classes": list(self.classes),
            "class_kinds": dict(self.class_kinds),
            "valid_shape": self.valid_shape.to_json(),
            "verification": dict(self.verification),
        }
        if self.architecture is not None:
            out["architecture"] = dict(self.architecture)
        if self.test_input is not None and self.test_expected is not None:
            tensors = {"input": self.test_input.to_json(at), "expected": self.test_expected.to_json(at)}
            out["test_tensors"] = tensors | ({"source": self.test_source} if self.test_source else {})
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "OnnxModelView":
        base = path.parent
        tensors = data.get("test_tensors") or {}
        return cls(
            **cls._common(data, path),
            name=data.get("name", path.parent.name),
            onnx=Artifact.from_json(data["onnx"], base),
            opset=int(data["opset"]),
            input=InputSpec.from_json(data["input"]),
            classes=tuple(data["classes"]),
            class_kinds=_kinds(data),
            valid_shape=ValidShape.from_json(data["valid_shape"]),
            verification=data["verification"],
            input_name=data.get("input_name"),
            output_name=data.get("output_name"),
            architecture=data.get("architecture"),
            test_input=_artifact(tensors.get("input"), base),
            test_expected=_artifact(tensors.get("expected"), base),
            test_source=tensors.get("source"),
        )


@dataclass(frozen=True)
class Encoding:
    """How probabilities are stored: array dtype, and probability = stored value * scale."""

    dtype: Literal["uint8", "uint16", "float16", "float32"]
    scale: float


@dataclass(frozen=True, kw_only=True)
class PredictionsView(View):
    """Per-class probabilities on test crops or regions (predictor output)."""

    KIND: ClassVar[str] = "predictions"
    FIELDS: ClassVar[tuple[str, ...]] = ("zarr", "encoding", "provider", "crops", "volumes", "plan_hash")

    zarr: Path
    encoding: Encoding
    crops: tuple[CropEntry, ...]
    provider: str | None = None
    plan_hash: str | None = None

    def body(self, at: Path) -> dict[str, Any]:
        out: dict[str, Any] = {
            "zarr": _rel(self.zarr, at),
            "encoding": {"dtype": self.encoding.dtype, "scale": self.encoding.scale},
        }
        if self.provider is not None:
            out["provider"] = self.provider
        if self.plan_hash is not None:
            out["plan_hash"] = self.plan_hash
        return out | _crops_json(self.crops)

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "PredictionsView":
        enc = data["encoding"]
        return cls(
            **cls._common(data, path),
            zarr=(path.parent / data["zarr"]).resolve(),
            encoding=Encoding(enc["dtype"], float(enc["scale"])),
            crops=_crop_lists(data),
            provider=data.get("provider"),
            plan_hash=data.get("plan_hash"),
        )


@dataclass(frozen=True, kw_only=True)
class ProcessedView(View):
    """Semantic masks and instance labels (postprocessor output)."""

    KIND: ClassVar[str] = "processed"
    FIELDS: ClassVar[tuple[str, ...]] = ("zarr", "crops", "volumes")

    zarr: Path
    crops: tuple[CropEntry, ...]

    def body(self, at: Path) -> dict[str, Any]:
        return {"zarr": _rel(self.zarr, at)} | _crops_json(self.crops)

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "ProcessedView":
        return cls(
            **cls._common(data, path),
            zarr=(path.parent / data["zarr"]).resolve(),
            crops=_crop_lists(data),
        )


@dataclass(frozen=True, kw_only=True)
class SubmissionView(View):
    """A challenge submission zip (packer output): the zip, the test manifest it was packed for, what is missing."""

    KIND: ClassVar[str] = "submission"
    FIELDS: ClassVar[tuple[str, ...]] = ("zip", "test_manifest", "rows", "packed", "missing")

    zip: Artifact
    test_manifest: str
    rows: int
    packed: int
    missing: tuple[tuple[int, str], ...] = ()

    def body(self, at: Path) -> dict[str, Any]:
        return {
            "zip": self.zip.to_json(at),
            "test_manifest": self.test_manifest,
            "rows": self.rows,
            "packed": self.packed,
            "missing": [{"crop": c, "class": n} for c, n in self.missing],
        }

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "SubmissionView":
        return cls(
            **cls._common(data, path),
            zip=Artifact.from_json(data["zip"], path.parent),
            test_manifest=data.get("test_manifest", ""),
            rows=int(data["rows"]),
            packed=int(data["packed"]),
            missing=tuple((int(m["crop"]), str(m["class"])) for m in data["missing"]),
        )


@dataclass(frozen=True, kw_only=True)
class ScoresView(View):
    """Scores of a submission by the challenge rules (evaluator output)."""

    KIND: ClassVar[str] = "scores"
    FIELDS: ClassVar[tuple[str, ...]] = (
        "result", "extended", "overall_score", "overall_instance_score", "overall_semantic_score", "label_scores",
        "total_evals", "num_evals_done",
    )  # fmt: skip

    result: Path
    overall_score: float | None
    overall_instance_score: float | None
    overall_semantic_score: float | None
    label_scores: Mapping[str, Mapping[str, Any]]
    extended: Path | None = None
    total_evals: int | None = None
    num_evals_done: int | None = None

    def class_kinds(self) -> dict[str, ClassKind]:
        """How each class was scored: an instance class's record has an F1 (and Hausdorff), a semantic one's an IoU."""
        return {label: "instance" if "f1" in s else "semantic" for label, s in self.label_scores.items()}

    def body(self, at: Path) -> dict[str, Any]:
        out: dict[str, Any] = {"result": _rel(self.result, at)}
        if self.extended is not None:
            out["extended"] = _rel(self.extended, at)
        out |= {
            "overall_score": self.overall_score,
            "overall_instance_score": self.overall_instance_score,
            "overall_semantic_score": self.overall_semantic_score,
            "label_scores": {k: dict(v) for k, v in self.label_scores.items()},
        }
        if self.total_evals is not None:
            out["total_evals"] = self.total_evals
        if self.num_evals_done is not None:
            out["num_evals_done"] = self.num_evals_done
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> "ScoresView":
        base = path.parent
        return cls(
            **cls._common(data, path),
            result=(base / data["result"]).resolve(),
            extended=(base / data["extended"]).resolve() if data.get("extended") else None,
            overall_score=data["overall_score"],
            overall_instance_score=data["overall_instance_score"],
            overall_semantic_score=data["overall_semantic_score"],
            label_scores=data["label_scores"],
            total_evals=data.get("total_evals"),
            num_evals_done=data.get("num_evals_done"),
        )


VIEWS: dict[str, type[View]] = {
    v.KIND: v
    for v in (DatasetView, ModelView, OnnxModelView, PredictionsView, ProcessedView, SubmissionView, ScoresView)
}


# ---------------------------------------------------------------- the two verbs
def load(path: str | Path, kind: type[V]) -> V:
    """Read, validate and view the manifest at ``path`` as ``kind`` (e.g. ``load(p, DatasetView)``).

    A manifest of another kind, an older schema version or one failing its
    schema is an InputError naming the file and the failing JSON pointer.
    """
    m = read_manifest(path, kind.KIND)
    try:
        return kind.parse(m.data, m.path)
    except (KeyError, TypeError, ValueError) as exc:  # schema-valid but not what the view needs
        raise ManifestError(f"{m.path}: cannot read this {kind.KIND} manifest ({type(exc).__name__}: {exc})") from None


def load_any(path: str | Path, kinds: Sequence[type[View]] | None = None) -> View:
    """Like `load` for a manifest whose kind is not known in advance (the viewer takes any)."""
    allowed = tuple(kinds or VIEWS.values())
    p = Path(path)
    try:
        found = json.loads(p.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        found = None
    for k in allowed:
        if found == k.KIND:
            return load(p, k)
    return load(p, allowed[0]) if len(allowed) == 1 else cast(View, _reject(p, found, allowed))


def _reject(path: Path, found: Any, allowed: Sequence[type[View]]) -> None:
    read_manifest(path, tuple(k.KIND for k in allowed))  # raises the usual one-line error
    raise ManifestError(f"{path}: /kind: is {found!r}, expected {' or '.join(repr(k.KIND) for k in allowed)}")


def save(view: V, path: str | Path) -> V:
    """Validate ``view`` as a manifest at ``path``, write it atomically, and return it as written."""
    p = Path(path)
    written = write_manifest(p, view.to_json(p))
    return replace(view, path=written.path)
