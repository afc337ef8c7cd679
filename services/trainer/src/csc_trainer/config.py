"""Typed configs of ``csc-train`` and ``csc make-datasplit``.

Every field is a CLI flag (``--learning-rate 1e-4``) and may come from a YAML
or JSON file (``--config train.yaml``); flags override the file. Vectors are
comma strings on the command line ("32,32,32") and may be lists in a file.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from csc_common.errors import InputError

DEFAULT_CLASSES = "mito,nuc,ves,ecs,cyto,er"


def _h(text: str) -> dict[str, Any]:
    return {"help": text}


def parse_list(value: str | Sequence[Any], what: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (empty entries dropped)."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [s.strip() for s in items if s.strip()]


def parse_vec3(value: str | float | Sequence[Any], what: str, cast: type = float) -> tuple[Any, Any, Any]:
    """One number (isotropic) or three (z, y, x), as a comma string or a list; ``cast`` int or float."""
    items = [value] if isinstance(value, int | float) else parse_list(value, what)
    try:
        nums = [float(v) for v in items]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3 or any(n <= 0 for n in nums) or (cast is int and any(not n.is_integer() for n in nums)):
        raise InputError(f"{what}: expected 1 or 3 positive {cast.__name__} values (z,y,x), got {value!r}")
    return tuple(cast(n) for n in nums)  # type: ignore[return-value]


@dataclass(frozen=True)
class TrainConfig:
    """Train a 2D or 3D U-Net on the training crops of a dataset manifest; writes a model manifest."""

    dataset: str = field(default="", metadata=_h("dataset manifest (fetcher output), e.g. data/dataset.json"))
    output: str = field(
        default="",
        metadata=_h(
            "model manifest to write, e.g. data/models/demo/model.json; checkpoints, logs and PNGs go beside it"
        ),
    )
    name: str = field(default="", metadata=_h("model name (default: the output folder's name)"))
    classes: str = field(default=DEFAULT_CLASSES, metadata=_h("comma list of classes = output channel order"))
    crops: str = field(default="", metadata=_h("comma list of training crop ids to use (default: all)"))
    dims: int = field(default=3, metadata=_h("2 = 2D U-Net on z slices, 3 = 3D U-Net"))
    depth: int = field(default=3, metadata=_h("U-Net levels (input must be a multiple of 2**(depth-1))"))
    base_features: int = field(default=8, metadata=_h("features of the first level; doubled per level"))
    norm: Literal["batch", "instance", "group", "none"] = field(default="batch", metadata=_h("normalization layers"))
    patch_shape: str = field(default="", metadata=_h("zyx patch in voxels (default 32,32,32 for 3D, 1,64,64 for 2D)"))
    voxel_size: str = field(
        default="8,8,8", metadata=_h("zyx target voxel size in nm; EM and labels are resampled to it")
    )
    iterations: int = field(default=300, metadata=_h("total optimizer steps"))
    batch_size: int = field(default=4, metadata=_h("patches per step"))
    learning_rate: float = field(default=5e-3, metadata=_h("AdamW peak learning rate"))
    weight_decay: float = field(default=1e-4, metadata=_h("AdamW decoupled weight decay"))
    schedule: Literal["cosine", "constant", "step"] = field(
        default="cosine", metadata=_h("learning-rate schedule over the iterations (after warm-up)")
    )
    warmup_iterations: int = field(default=10, metadata=_h("linear warm-up steps"))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping norm (0 = off)"))
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
            "fraction of patches centred on a voxel of a class chosen uniformly (the rest: uniform over crop volume)"
        ),
    )
    augment: bool = field(
        default=True,
        metadata=_h("random flips, in-plane 90-degree rotations, transposes, intensity jitter (--no-augment disables)"),
    )
    intensity_jitter: float = field(default=0.1, metadata=_h("max relative contrast/brightness jitter"))
    validate_ratio: float = field(
        default=0.15, metadata=_h("probability a training crop goes to validation when the datasplit is created")
    )
    datasplit: str = field(
        default="",
        metadata=_h(
            "datasplit CSV to use; created there if missing (default: a fresh datasplit.csv beside the output)"
        ),
    )
    force_all_classes: Literal["false", "true", "train", "validate"] = field(
        default="validate",
        metadata=_h(
            "when the datasplit is created: crops lacking a class are dropped (true) or kept out of that split"
        ),
    )
    filter_by_scale: bool = field(
        default=False, metadata=_h("when the datasplit is created: ignore classes annotated coarser than --voxel-size")
    )
    validate_every: int = field(default=100, metadata=_h("iterations between validations (and checkpoints)"))
    validation_patches: int = field(default=16, metadata=_h("patches per validation pass (fixed tiles)"))
    seed: int = field(default=42, metadata=_h("seeds model init, sampling and augmentation"))
    device: str = field(default="auto", metadata=_h("auto (cuda if present, else cpu), cpu, cuda, cuda:N"))
    amp: bool = field(default=True, metadata=_h("mixed precision on CUDA (--no-amp disables; never used on CPU)"))
    threads: int = field(default=0, metadata=_h("torch CPU threads (0 = torch default)"))
    resume: bool = field(default=False, metadata=_h("continue from checkpoints/latest.pt beside the output"))
    stop_after: int = field(
        default=0,
        metadata=_h(
            "stop this run after N iterations (checkpoint saved, no "
            "manifest; continue later with --resume); 0 = run to the end"
        ),
    )
    tensorboard: bool = field(default=True, metadata=_h("write TensorBoard events (--no-tensorboard disables)"))
    plots: bool = field(default=True, metadata=_h("write curves.png and samples.png (--no-plots disables)"))

    # -- parsed views ------------------------------------------------------
    @property
    def class_list(self) -> list[str]:
        return parse_list(self.classes, "--classes")

    @property
    def crop_ids(self) -> list[int]:
        try:
            return [int(c.removeprefix("crop")) for c in parse_list(self.crops, "--crops")]
        except ValueError:
            raise InputError(f"--crops: expected a comma list of crop ids, got {self.crops!r}") from None

    @property
    def patch(self) -> tuple[int, int, int]:
        if not self.patch_shape:
            return (32, 32, 32) if self.dims == 3 else (1, 64, 64)
        return parse_vec3(self.patch_shape, "--patch-shape", int)

    @property
    def voxel(self) -> tuple[float, float, float]:
        return parse_vec3(self.voxel_size, "--voxel-size", float)

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

    def check(self) -> None:
        """Cheap value checks, done before reading data or importing torch."""
        if not self.dataset:
            raise InputError("--dataset is required (a dataset manifest)")
        if not self.output:
            raise InputError("--output is required (the model manifest to write)")
        if self.dims not in (2, 3):
            raise InputError(f"--dims must be 2 or 3, got {self.dims}")
        if not self.class_list:
            raise InputError("--classes is empty")
        if len(set(self.class_list)) != len(self.class_list):
            raise InputError(f"--classes lists a class twice: {self.classes}")
        patch = self.patch
        if self.dims == 2 and patch[0] != 1:
            raise InputError(f"--patch-shape {list(patch)}: a 2D model takes patches of one z slice (1,Y,X)")
        m = 2 ** (self.depth - 1)
        mult = (1 if self.dims == 2 else m, m, m)
        if self.depth < 1 or any(p % k for p, k in zip(patch, mult, strict=True)):
            raise InputError(
                f"--patch-shape {list(patch)} is not divisible by the network's downsampling multiple "
                f"{list(mult)} (depth {self.depth})"
            )
        for name in ("iterations", "batch_size", "validate_every", "validation_patches", "base_features"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.class_balance <= 1.0:
            raise InputError(f"--class-balance must be within [0, 1], got {self.class_balance}")
        if not 0.0 <= self.validate_ratio < 1.0:
            raise InputError(f"--validate-ratio must be within [0, 1), got {self.validate_ratio}")
        if self.learning_rate <= 0:
            raise InputError(f"--learning-rate must be positive, got {self.learning_rate}")
        self.voxel  # noqa: B018 - parse check


@dataclass(frozen=True)
class DatasplitConfig:
    """Write the training/validation split of a dataset's training crops as a CSV (the original's datasplit.csv)."""

    dataset: str = field(default="", metadata=_h("dataset manifest (fetcher output)"))
    csv_path: str = field(default="datasplit.csv", metadata=_h("CSV to write"))
    classes: str = field(default="nuc,er", metadata=_h("comma list of classes"))
    scale: str = field(
        default="",
        metadata=_h("keep a class only where its s0 voxel size is <= this (1 or 3 numbers, nm); default: no filter"),
    )
    force_all_classes: Literal["false", "true", "train", "validate"] = field(
        default="false", metadata=_h("rows lacking a class: true = dropped, train/validate = kept out of that split")
    )
    validate_ratio: float = field(default=0.1, metadata=_h("probability a crop goes to validation"))
    datasets: str = field(default="", metadata=_h("comma list of datasets (default: all)"))
    crops: str = field(default="", metadata=_h("comma list of crop ids (default: all)"))
    seed: int = field(default=42, metadata=_h("random seed of the split"))
