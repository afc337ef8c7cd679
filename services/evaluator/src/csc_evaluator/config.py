"""The evaluator's typed configuration (CLI flags, or a YAML/JSON file via --config).

Both command forms parse into this one dataclass:
``csc-evaluate SUBMISSION --truth T --test-manifest CSV --output RESULT.json`` and the
original's ``csc evaluate -s SUBMISSION -t TRUTH -r RESULT [-ic classes]``.
"""

from dataclasses import dataclass, field
from typing import Literal

from csc_common.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Config:
    """Score a submission by the CellMap challenge's rules (result.json, result_extended.json, scores manifest)."""

    submission: str = field(
        default="",
        metadata={
            "args": ["submission"],
            "nargs": "?",
            "type": str,
            "metavar": "SUBMISSION",
            "help": "submission: a zip, a folder holding exactly one zip, or a zarr folder",
        },
    )
    submission_path: str = field(
        default="",
        metadata={
            "args": ["-s", "--submission-path", "--submission_path"],
            "help": "the submission (the original's -s form; same as the positional SUBMISSION)",
        },
    )
    truth: str = field(
        metadata={
            "args": ["--truth", "-t", "--truth-path", "--truth_path"],
            "help": "ground-truth zarr: crop<N>/<class> arrays with voxel_size attrs (optional <class>_mask)",
        },
    )
    test_manifest: str = field(
        default="",
        metadata={"help": "test crop manifest CSV (default: test_crop_manifest.csv beside the truth zarr)"},
    )
    output: str = field(
        default="",
        metadata={
            "args": ["--output", "-r", "--result-file", "--result_file"],
            "help": "result JSON path (default result.json); RESULT_extended.json is written beside it",
        },
    )
    scores_manifest: str = field(
        default="", metadata={"help": "scores manifest path (default: scores.json beside the result)"}
    )
    instance_classes: str = field(
        default="",
        metadata={
            "args": ["--instance-classes", "-ic", "--instance_classes"],
            "help": "comma list of classes scored as instances (default: the kinds of --dataset, else the "
            "challenge's list)",
        },
    )
    dataset: str = field(
        default="",
        metadata={
            "help": "dataset manifest (dataset.json) whose recorded class kinds decide which classes are scored as "
            "instances (default: the challenge's list; --instance-classes overrides both)"
        },
    )
    compare_empty: bool = field(
        default=False, metadata={"help": "also score an all-empty submission on the same rows and print both"}
    )
    workers: int = field(
        default=0, metadata={"help": "worker processes (0: MAX_WORKERS env, else CPUs, capped by memory)", "min": 0}
    )
    work_dir: str = field(
        default="",
        metadata={
            "help": "not needed any more: nothing is extracted, a zip is read in place (still accepted: must be an "
            "existing folder)"
        },
    )
    rules: Literal["challenge", "documented", "official"] = field(
        default="challenge",
        metadata={
            "help": "challenge: the leaderboard's numbers (official matching + Hausdorff) with the documented "
            "class discovery; documented: the documented Hausdorff rule too; official: also the official "
            "code's discovery quirks (see README)"
        },
    )

    def __post_init__(self) -> None:
        if self.submission and self.submission_path and self.submission != self.submission_path:
            raise InputError(f"two submissions given ({self.submission!r} and -s {self.submission_path!r}); give one")
        if not self.submission_source:
            raise InputError("no submission given (SUBMISSION or -s PATH)")

    @property
    def submission_source(self) -> str:
        """The submission, from the positional or the original's ``-s`` form."""
        return self.submission or self.submission_path
