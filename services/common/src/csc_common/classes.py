"""The challenge's class table (UPSTREAM.md §4): 48 tested classes, 10 scored as instances.

The order of ``TESTED_CLASSES`` is the order of the challenge's
tested_classes.csv, which the original's examples use as channel order.
"""

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


def class_kind(name: str) -> str:
    """``"instance"`` or ``"semantic"`` for a class name."""
    return "instance" if is_instance(name) else "semantic"
