"""Typed configs of ``csc-train`` and ``csc make-datasplit``.

Every field is a CLI flag (``--learning-rate 1e-4``) and may come from a YAML
or JSON file (``--config train.yaml``); flags override the file. Vectors are
comma strings on the command line ("32,32,32") and may be lists in a file.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from csc_common.cli import parse_crop_ids, parse_list, parse_shape3, parse_vec3
from csc_common.errors import InputError
from csc_common.geometry import Shape3, Vec3

DEFAULT_CLASSES = "mito,nuc,ves,ecs,cyto,er"
ForceAll = Literal["false", "true", "train", "validate"]


def _h(text: str, **limits: float) -> dict[str, Any]:
    """Field metadata: the help text and the value's range (``min``, ``max``, ``gt``, ``lt``)."""
    return {"help": text, **limits}


def _class_list(value: str, flag: str) -> list[str]:
    classes = parse_list(value, flag)
    if not classes:
        raise InputError(f"{flag} is empty")
    if len(set(classes)) != len(classes):
        raise InputError(f"{flag} lists a class twice: {value}")
    return classes


class _Selection:
    """The parsed ``--classes`` and ``--crops`` of both configs (read from the fields of the same names)."""

    classes: str
    crops: str

    @property
    def class_list(self) -> list[str]:
        return _class_list(self.classes, "--classes")

    @property
    def crop_ids(self) -> list[int]:
        return parse_crop_ids(self.crops, "--crops")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_Selection):
    """Train a 2D or 3D U-Net on the training crops of a dataset manifest; writes a model manifest."""

    dataset: str = field(metadata=_h("dataset manifest (fetcher output), e.g. data/dataset.json"))
    output: str = field(
        metadata=_h(
            "model manifest to write, e.g. data/models/demo/model.json; checkpoints, logs and PNGs go beside it"
        ),
    )
    name: str = field(default="", metadata=_h("model name (default: the output folder's name)"))
    classes: str = field(default=DEFAULT_CLASSES, metadata=_h("comma list of classes = output channel order"))
    crops: str = field(default="", metadata=_h("comma list of training crop ids to use (default: all)"))
    dims: Literal[2, 3] = field(default=3, metadata=_h("2 = 2D U-Net on z slices, 3 = 3D U-Net"))
    depth: int = field(default=3, metadata=_h("U-Net levels (input must be a multiple of 2**(depth-1))", min=1))
    base_features: int = field(default=8, metadata=_h("features of the first level; doubled per level", min=1))
    norm: Literal["batch", "instance", "group", "none"] = field(default="batch", metadata=_h("normalization layers"))
    patch_shape: str = field(default="", metadata=_h("zyx patch in voxels (default 32,32,32 for 3D, 1,64,64 for 2D)"))
    voxel_size: str = field(
        default="8,8,8", metadata=_h("zyx target voxel size in nm; EM and labels are resampled to it")
    )
    iterations: int = field(default=300, metadata=_h("total optimizer steps", min=1))
    batch_size: int = field(default=4, metadata=_h("patches per step", min=1))
    learning_rate: float = field(default=5e-3, metadata=_h("AdamW peak learning rate", gt=0))
    weight_decay: float = field(default=1e-4, metadata=_h("AdamW decoupled weight decay", min=0))
    schedule: Literal["cosine", "constant", "step"] = field(
        default="cosine", metadata=_h("learning-rate schedule over the iterations (after warm-up)")
    )
    warmup_iterations: int = field(default=10, metadata=_h("linear warm-up steps", min=0))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping norm (0 = off)", min=0))
    pos_weight: bool = field(
        default=True,
        metadata=_h(
            "weight positives per class by the training set's "
            "negative/positive ratio, capped at 100 (upstream "
            "weight_loss; --no-pos-weight disables)"
        ),
    )
    class_balance: float = field(
        default=0.75,
        metadata=_h(
            "fraction of patches centred on a voxel of a class chosen uniformly (the rest: uniform over crop volume)",
            min=0,
            max=1,
        ),
    )
    augment: bool = field(
        default=True,
        metadata=_h("random flips, in-plane 90-degree rotations, transposes, intensity jitter (--no-augment disables)"),
    )
    intensity_jitter: float = field(default=0.1, metadata=_h("max relative contrast/brightness jitter", min=0))
    validate_ratio: float = field(
        default=0.15,
        metadata=_h("probability a training crop goes to validation when the datasplit is created", min=0, lt=1),
    )
    datasplit: str = field(
        default="",
        metadata=_h(
            "datasplit CSV to use; created there if missing (default: a fresh datasplit.csv beside the output)"
        ),
    )
    force_all_classes: ForceAll = field(
        default="validate",
        metadata=_h(
            "when the datasplit is created: crops lacking a class are dropped (true) or kept out of that split"
        ),
    )
    filter_by_scale: bool = field(
        default=False, metadata=_h("when the datasplit is created: ignore classes annotated coarser than --voxel-size")
    )
    validate_every: int = field(default=100, metadata=_h("iterations between validations (and checkpoints)", min=1))
    validation_patches: int = field(default=16, metadata=_h("patches per validation pass (fixed tiles)", min=1))
    seed: int = field(default=42, metadata=_h("seeds model init, sampling and augmentation"))
    device: str = field(default="auto", metadata=_h("auto (cuda if present, else cpu), cpu, cuda, cuda:N"))
    amp: bool = field(default=True, metadata=_h("mixed precision on CUDA (--no-amp disables; never used on CPU)"))
    threads: int = field(default=0, metadata=_h("torch CPU threads (0 = torch default)", min=0))
    resume: bool = field(default=False, metadata=_h("continue from checkpoints/latest.pt beside the output"))
    stop_after: int = field(
        default=0,
        metadata=_h(
            "stop this run after N iterations (checkpoint saved, no "
            "manifest; continue later with --resume); 0 = run to the end",
            min=0,
        ),
    )
    tensorboard: bool = field(default=True, metadata=_h("write TensorBoard events (--no-tensorboard disables)"))
    plots: bool = field(default=True, metadata=_h("write curves.png and samples.png (--no-plots disables)"))

    def __post_init__(self) -> None:
        """Rules across fields (and the syntax of list values), checked before any data is read."""
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise InputError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        self.class_list  # noqa: B018 - parse checks
        self.crop_ids  # noqa: B018
        self.voxel  # noqa: B018
        patch = self.patch
        if self.dims == 2 and patch[0] != 1:
            raise InputError(f"--patch-shape {list(patch)}: a 2D model takes patches of one z slice (1,Y,X)")
        m = 2 ** (self.depth - 1)
        mult = (1 if self.dims == 2 else m, m, m)
        if any(p % k for p, k in zip(patch, mult, strict=True)):
            raise InputError(
                f"--patch-shape {list(patch)} is not divisible by the network's downsampling multiple "
                f"{list(mult)} (depth {self.depth})"
            )

    # -- parsed views ------------------------------------------------------
    @property
    def patch(self) -> Shape3:
        if not self.patch_shape:
            return (32, 32, 32) if self.dims == 3 else (1, 64, 64)
        return parse_shape3(self.patch_shape, "--patch-shape")

    @property
    def voxel(self) -> Vec3:
        return parse_vec3(self.voxel_size, "--voxel-size")

    @property
    def architecture(self) -> dict[str, Any]:
        return {
            "name": "unet",
            "dims": self.dims,
            "in_channels": 1,
            "out_channels": len(self.class_list),
            "depth": self.depth,
            "base_features": self.base_features,
            "norm": self.norm,
        }


@dataclass(frozen=True, kw_only=True)
class DatasplitConfig(_Selection):
    """Write the training/validation split of a dataset's training crops as a CSV (the original's datasplit.csv)."""

    dataset: str = field(metadata=_h("dataset manifest (fetcher output)"))
    csv_path: str = field(default="datasplit.csv", metadata=_h("CSV to write"))
    classes: str = field(default="nuc,er", metadata=_h("comma list of classes"))
    scale: str = field(
        default="",
        metadata=_h("keep a class only where its s0 voxel size is <= this (1 or 3 numbers, nm); default: no filter"),
    )
    force_all_classes: ForceAll = field(
        default="false", metadata=_h("rows lacking a class: true = dropped, train/validate = kept out of that split")
    )
    validate_ratio: float = field(default=0.1, metadata=_h("probability a crop goes to validation", min=0, max=1))
    datasets: str = field(default="", metadata=_h("comma list of datasets (default: all)"))
    crops: str = field(default="", metadata=_h("comma list of crop ids (default: all)"))
    seed: int = field(default=42, metadata=_h("random seed of the split"))

    def __post_init__(self) -> None:
        self.class_list  # noqa: B018 - parse checks
        self.crop_ids  # noqa: B018
        self.scale_nm  # noqa: B018

    @property
    def dataset_names(self) -> list[str]:
        return parse_list(self.datasets, "--datasets")

    @property
    def scale_nm(self) -> Vec3 | None:
        """The --scale filter (nm); None = no filter."""
        return parse_vec3(self.scale, "--scale") if self.scale else None


@dataclass(frozen=True, kw_only=True)
class CountsConfig:
    """Per dataset and class: how many training crops annotate the class, and its voxel counts (from the manifest)."""

    dataset: str = field(metadata=_h("dataset manifest (fetcher output)"))
    classes: str = field(
        default="nuc,er",
        metadata={"args": ["-c", "--classes"], **_h("comma list of classes, or 'all' (every class the manifest has)")},
    )
    json: bool = field(default=False, metadata=_h("print JSON instead of the table"))

    def __post_init__(self) -> None:
        if self.classes.strip() != "all":
            _class_list(self.classes, "--classes")

    @property
    def class_list(self) -> list[str] | None:
        """The requested classes; None = every class of the manifest."""
        return None if self.classes.strip() == "all" else _class_list(self.classes, "--classes")
