"""The challenge's class table (UPSTREAM.md §4): 48 tested classes, 10 scored as instances.

The order of ``TESTED_CLASSES`` is the order of the challenge's
tested_classes.csv, which the original's examples use as channel order.

This table is consulted once, when the fetcher writes the dataset manifest
(``kinds_for``, with the user's override); every later stage reads the kind a
manifest records for each class instead of looking a name up here.
"""

from collections.abc import Iterable, Mapping
from typing import Literal

ClassKind = Literal["instance", "semantic"]

TESTED_CLASSES: tuple[str, ...] = (
    "ecs", "pm", "mito_mem", "mito_lum", "mito_ribo", "golgi_mem", "golgi_lum",
    "ves_mem", "ves_lum", "endo_mem", "endo_lum", "lyso_mem", "lyso_lum", "ld_mem",
    "ld_lum", "er_mem", "er_lum", "eres_mem", "eres_lum", "ne_mem", "ne_lum",
    "np_out", "np_in", "hchrom", "echrom", "nucpl", "mt_out", "cyto", "mt_in",
    "nuc", "golgi", "ves", "endo", "lyso", "ld", "eres", "perox_mem", "perox_lum",
    "perox", "mito", "er", "ne", "np", "chrom", "mt", "cell", "er_mem_all",
    "ne_mem_all",
)  # fmt: skip

# Classes scored as instances in the challenge (docs table instance_challenge=True).
TESTED_INSTANCE_CLASSES: frozenset[str] = frozenset(
    {"nuc", "ves", "endo", "lyso", "ld", "perox", "mito", "np", "mt", "cell"}
)

# The original code's INSTANCE_CLASSES: decides nearest vs linear resampling and
# instance vs semantic scoring (it also names the untested `vim` and `instance`).
INSTANCE_CLASSES: tuple[str, ...] = (
    "nuc", "vim", "ves", "endo", "lyso", "ld", "perox", "mito", "np", "mt", "cell", "instance",
)  # fmt: skip


def is_instance(name: str, instance_classes: tuple[str, ...] | frozenset[str] = INSTANCE_CLASSES) -> bool:
    """True where ``name`` is scored (and resampled) as an instance class."""
    return name in instance_classes


def class_kind(name: str, instance_classes: Iterable[str] | None = None) -> ClassKind:
    """``"instance"`` or ``"semantic"`` for a class name (the challenge's list unless ``instance_classes``)."""
    return (
        "instance" if name in (INSTANCE_CLASSES if instance_classes is None else set(instance_classes)) else "semantic"
    )


def kinds_for(names: Iterable[str], instance_classes: Iterable[str] | None = None) -> dict[str, ClassKind]:
    """The kind of each class: the challenge's table, or exactly ``instance_classes`` when given (the override)."""
    chosen = None if instance_classes is None else set(instance_classes)
    return {n: class_kind(n, chosen) for n in names}


def is_known(name: str) -> bool:
    """A class of the challenge's table (tested classes, or the original code's instance names)."""
    return name in TESTED_CLASSES or name in INSTANCE_CLASSES


def instance_classes(kinds: Mapping[str, ClassKind] | None = None) -> list[str]:
    """Classes scored as instances: those a manifest records as such, else the challenge's list."""
    if kinds is None:
        return list(INSTANCE_CLASSES)
    return [name for name, kind in kinds.items() if kind == "instance"]
