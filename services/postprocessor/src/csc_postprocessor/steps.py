"""Declarative post-processing recipes: which steps run, in which order, for each class.

A recipe is a list of steps; the value flowing through it is first a
probability volume, then a mask (after ``threshold``), then instance labels
(after ``components`` or ``watershed``). The steps file (YAML or JSON) is
checked against ``steps.schema.json`` and then for order (a step must get
the kind of value it works on), so a bad recipe fails before any volume is
read. Built-in defaults: semantic -> threshold 0.5; instance -> threshold
0.5 + 26-connected components.

Example::

    defaults:
      instance: [{op: threshold, value: 0.5}, {op: components, connectivity: 26}]
    classes:
      mito:
        - {op: threshold, value: 0.4}
        - {op: fill_holes}
        - {op: watershed, h_nm: 16}
        - {op: remove_small, min_size_nm3: 1.0e5}
"""

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jsonschema
from csc_common.cli import load_config_file
from csc_common.errors import InputError

SCHEMA_PATH = Path(__file__).with_name("steps.schema.json")

Value = Literal["probability", "mask", "labels"]
Op = Literal["threshold", "fill_holes", "components", "watershed", "remove_small"]

# What each op accepts and what it yields.
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "threshold": ("probability",),
    "fill_holes": ("mask",),
    "components": ("mask",),
    "watershed": ("mask", "labels"),
    "remove_small": ("mask", "labels"),
}


@dataclass(frozen=True)
class Step:
    """One step with its parameters (defaults filled in)."""

    op: Op
    value: float = 0.5
    connectivity: int = 26
    h_nm: float | None = None
    min_size_nm3: float = 0.0

    def yields(self, given: Value) -> Value:
        if self.op == "threshold":
            return "mask"
        if self.op in ("components", "watershed"):
            return "labels"
        return given

    def describe(self) -> str:
        params = {
            "threshold": f"value={self.value}",
            "components": f"connectivity={self.connectivity}",
            "watershed": f"connectivity={self.connectivity}, h_nm={'auto' if self.h_nm is None else self.h_nm}",
            "remove_small": f"min_size_nm3={self.min_size_nm3}",
        }.get(self.op, "")
        return f"{self.op}({params})"


DEFAULTS: dict[str, tuple[Step, ...]] = {
    "semantic": (Step("threshold", value=0.5),),
    "instance": (Step("threshold", value=0.5), Step("components", connectivity=26)),
}


@dataclass(frozen=True)
class Recipes:
    """Steps per class kind plus per-class overrides."""

    defaults: dict[str, tuple[Step, ...]]
    classes: dict[str, tuple[Step, ...]]

    def for_class(self, name: str, kind: str) -> tuple[Step, ...]:
        return self.classes.get(name, self.defaults[kind])


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def check_order(steps: tuple[Step, ...], where: str) -> Value:
    """Raise InputError where a step gets the wrong kind of value; returns the final value kind."""
    value: Value = "probability"
    for i, step in enumerate(steps):
        if value not in _ACCEPTS[step.op]:
            need = " or ".join(_ACCEPTS[step.op])
            raise InputError(
                f"{where} step {i + 1} '{step.op}': needs a {need} volume but gets {value}"
                + ("; put 'threshold' first" if value == "probability" else "")
            )
        value = step.yields(value)
    return value


def parse_recipes(data: Any, source: str = "<steps>") -> Recipes:
    """Validate a steps mapping (schema, then step order) into Recipes."""
    if data is None:
        data = {}
    errors = sorted(_validator().iter_errors(data), key=lambda e: len(e.absolute_path))
    if errors:
        err = errors[-1] if any(len(e.absolute_path) for e in errors) else errors[0]
        pointer = "/" + "/".join(str(p) for p in err.absolute_path)
        raise InputError(f"{source}: {pointer}: {err.message}")

    def steps_of(items: list[dict[str, Any]]) -> tuple[Step, ...]:
        return tuple(Step(**item) for item in items)

    defaults = dict(DEFAULTS)
    for kind, items in (data.get("defaults") or {}).items():
        defaults[kind] = steps_of(items)
    classes = {name: steps_of(items) for name, items in (data.get("classes") or {}).items()}
    for kind, steps in defaults.items():
        check_order(steps, f"{source}: /defaults/{kind}")
    for name, steps in classes.items():
        check_order(steps, f"{source}: /classes/{name}")
    return Recipes(defaults, classes)


def load_recipes(spec: str | Mapping[str, Any] | None) -> Recipes:
    """Recipes from a mapping, a path to a YAML/JSON file, or nothing (built-in defaults)."""
    if not spec:
        return parse_recipes({}, "<defaults>")
    if isinstance(spec, Mapping):
        return parse_recipes(dict(spec), "steps")
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"{path}: steps file not found")
    return parse_recipes(load_config_file(path), str(path))
