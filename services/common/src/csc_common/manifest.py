"""Manifests: the JSON record each stage leaves, validated against schemas/<kind>.schema.json.

A manifest is written last and atomically, so its presence means the stage
finished; it is the Make target. Paths inside a manifest are relative to the
manifest's own folder, so the same tree works on the host, at /data in a
container and on a Kubernetes volume. Every error names the file and the
failing JSON pointer.
"""

import datetime as _dt
import functools
import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from csc_common.errors import ManifestError
from csc_common.fsutil import atomic_write_text, sha256_file

SCHEMA_VERSION = 1
KINDS = ("dataset", "model", "onnx-model", "predictions", "processed", "submission", "scores")
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@functools.cache
def _registry() -> Registry:
    resources = []
    for f in sorted(SCHEMA_DIR.glob("*.schema.json")):
        doc = json.loads(f.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


@functools.cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    if kind not in KINDS:
        raise ManifestError(f"unknown manifest kind {kind!r}; expected one of {', '.join(KINDS)}")
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry())


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path)


def validate(data: Any, kind: str, source: str = "<manifest>") -> None:
    """Raise ManifestError naming ``source`` and the JSON pointer of the first problem."""
    errors = sorted(
        _validator(kind).iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        err = errors[0]
        raise ManifestError(f"{source}: {_pointer(err.absolute_path)}: {err.message}")


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated manifest and the file it came from."""

    path: Path
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def dir(self) -> Path:
        return self.path.parent

    def resolve(self, rel: str) -> Path:
        """Absolute path of a manifest-relative path."""
        return (self.dir / rel).resolve()

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def ref(self, output_manifest: str | Path) -> dict[str, str]:
        """Provenance entry for this manifest as an input of the manifest at ``output_manifest``."""
        return {"kind": self.kind, "path": relpath(self.path, output_manifest), "sha256": sha256_file(self.path)}


def read_manifest(path: str | Path, kind: str | tuple[str, ...] | None = None) -> Manifest:
    """Load and validate a manifest, checking its kind. Errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{p}: manifest file not found")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: cannot read manifest ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{p}: /: manifest must be a JSON object")
    found = data.get("kind")
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted and found not in wanted:
        raise ManifestError(f"{p}: /kind: is {found!r}, expected {' or '.join(map(repr, wanted))}")
    if found not in KINDS:
        raise ManifestError(f"{p}: /kind: unknown manifest kind {found!r}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{p}: /schema_version: is {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    validate(data, str(found), str(p))
    return Manifest(p.resolve(), data)


def write_manifest(path: str | Path, data: dict[str, Any]) -> Manifest:
    """Validate then atomically write a manifest; returns it as loaded."""
    p = Path(path)
    validate(data, str(data.get("kind")), str(p))
    atomic_write_text(p, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Manifest(p.resolve(), data)


def relpath(target: str | Path, manifest_path: str | Path) -> str:
    """``target`` relative to the folder of the manifest at ``manifest_path``."""
    return os.path.relpath(Path(target).resolve(), Path(manifest_path).resolve().parent)


def artifact(target: str | Path, manifest_path: str | Path, *, digest: bool = True) -> dict[str, Any]:
    """An artifact reference: manifest-relative path, and size + sha256 for files."""
    t = Path(target)
    ref: dict[str, Any] = {"path": relpath(t, manifest_path)}
    if t.is_file():
        ref["bytes"] = t.stat().st_size
        if digest:
            ref["sha256"] = sha256_file(t)
    return ref


def now() -> str:
    """UTC timestamp in ISO 8601, seconds precision."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _package_version(stage: str) -> str:
    for dist in (f"csc-{stage}", "csc-common"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "0+unknown"


def producer(stage: str, started: str, args: list[str] | None = None) -> dict[str, Any]:
    """The ``producer`` block: which stage, version, image, arguments, when."""
    return {
        "stage": stage,
        "version": _package_version(stage),
        "image": os.environ.get("CSC_IMAGE"),
        "args": list(sys.argv[1:] if args is None else args),
        "started": started,
        "finished": now(),
    }


def new_manifest(
    kind: str,
    stage: str,
    started: str,
    *,
    inputs: list[dict[str, Any]] | None = None,
    args: list[str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    """A manifest dict with the common header filled in; ``body`` is the kind's content."""
    return {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "producer": producer(stage, started, args),
        "inputs": inputs or [],
        **body,
    }
