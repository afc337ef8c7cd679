"""csc-fetch configuration: every option of the original fetch-data, plus selection and S3 knobs."""
# ruff: noqa: UP007, UP045  (argparse-dataclass needs typing.Optional, not X | None)

from dataclasses import dataclass, field
from typing import Literal, Optional

from csc_common.cli import parse_floats, parse_list, refuse_ignored
from csc_common.errors import InputError

from csc_fetcher.plan import parse_crops
from csc_fetcher.sources import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class Config:
    """Fetch the challenge's EM and ground-truth crops (from S3, or the embedded synthetic dataset)."""

    source: Literal["s3", "synthetic", "local"] = field(
        default="s3",
        metadata={
            "help": "s3: the public bucket (or --endpoint-url); synthetic: generate the embedded dataset into "
            "--bucket-dir (default DEST/.synthetic-bucket) and fetch from it; local: a folder in bucket layout"
        },
    )
    dest: str = field(default="data", metadata={"args": ["-d", "--dest"], "help": "destination root folder"})
    output: Optional[str] = field(
        default=None, metadata={"help": "dataset manifest to write (default DEST/dataset.json)"}
    )
    crops: str = field(
        default="all",
        metadata={
            "args": ["-c", "--crops"],
            "help": "'all' (training + test crops), 'test' (test crops, EM only), 'train', "
            "or comma-separated crop ids like 111,112",
        },
    )
    classes: Optional[str] = field(default=None, metadata={"help": "comma-separated classes to fetch (default all)"})
    instance_classes: str = field(
        default="",
        metadata={
            "help": "comma-separated classes recorded as instance classes in the dataset manifest, every other "
            "class as semantic (default: the challenge's class table); later stages read the kinds from there"
        },
    )
    datasets: Optional[str] = field(default=None, metadata={"help": "comma-separated datasets to fetch (default all)"})
    raw_padding: int = field(
        default=0,
        metadata={
            "args": ["-p", "--raw-padding"],
            "help": "extra EM voxels around each crop, same count at every level",
            "min": 0,
        },
    )
    access_mode: Literal["append", "overwrite"] = field(
        default="append",
        metadata={
            "args": ["-m", "--access-mode"],
            "help": "append keeps existing files; overwrite deletes each dataset's zarr first",
        },
    )
    fetch_all_em_resolutions: bool = field(
        default=False,
        metadata={
            "args": ["--fetch-all-em-resolutions", "-all-res"],
            "help": "fetch every EM level (default: skip levels finer than 0.8 x the label voxel size)",
        },
    )
    resolution: Optional[str] = field(
        default=None, metadata={"help": "only the EM level(s) closest to these voxel sizes in nm, e.g. 8 or 8,16"}
    )
    batch_size: int = field(
        default=256,
        metadata={
            "args": ["-b", "--batch-size"],
            "help": "objects per copy task (lowered automatically so that every worker has work)",
            "min": 1,
        },
    )
    num_workers: Optional[int] = field(
        default=None,
        metadata={
            "args": ["-w", "--num-workers"],
            "help": "parallel downloads (default env CSC_FETCH_DATA_NUM_WORKERS or 32)",
            "min": 1,
        },
    )
    zip: bool = field(
        default=False,
        metadata={"help": "download the pre-made zip (only with --crops all) instead of chunks; unzip it yourself"},
    )
    dry_run: bool = field(
        default=False, metadata={"help": "print the plan (datasets, crops, objects, bytes, estimated time) and stop"}
    )
    manifest: Optional[str] = field(
        default=None,
        metadata={
            "help": "training crop manifest (manifest.csv) path or URL; default the challenge's published one "
            "(env CSC_FETCH_DATA_MANIFEST_URL)"
        },
    )
    test_manifest: Optional[str] = field(
        default=None,
        metadata={
            "help": "test crop manifest path or URL (default env CSC_TEST_CROP_MANIFEST_URL or the published one)"
        },
    )
    zip_manifest: Optional[str] = field(
        default=None,
        metadata={
            "help": "zip manifest path or URL (default env CSC_FETCH_ZIP_DATA_MANIFEST_URL or the published one)"
        },
    )
    endpoint_url: Optional[str] = field(
        default=None, metadata={"help": "S3-compatible endpoint (default env AWS_ENDPOINT_URL, else AWS)"}
    )
    bucket_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "folder of the synthetic/local bucket (default DEST/.synthetic-bucket for --source synthetic)"
        },
    )
    seed: int = field(default=0, metadata={"help": "synthetic data seed"})
    size: Literal["tiny", "demo"] = field(default="demo", metadata={"help": "synthetic data size"})
    retries: int = field(
        default=8, metadata={"help": "attempts per S3 request (exponential backoff + jitter)", "min": 1}
    )
    timeout: float = field(default=60.0, metadata={"help": "S3 read timeout per request, seconds", "gt": 0})

    def __post_init__(self) -> None:
        """Rules across fields and the syntax of list values, checked before anything is read."""
        if self.source == "local" and not self.bucket_dir:
            raise InputError("--source local needs --bucket-dir (a folder in bucket layout)")
        if self.source == "s3":
            refuse_ignored(self, ["bucket_dir"], "with --source s3 (it reads the bucket, not a folder)")
        else:
            refuse_ignored(self, ["endpoint_url"], f"with --source {self.source} (it reads a folder, not S3)")
        if self.source != "synthetic":
            refuse_ignored(self, ["seed", "size"], f"with --source {self.source} (they shape the synthetic data)")
        if self.zip:
            if parse_crops(self.crops) != "all":
                raise InputError(
                    f"--zip --crops {self.crops}: the pre-made zips hold every crop; --zip works only with --crops all"
                )
            refuse_ignored(
                self,
                ["output", "classes", "datasets", "instance_classes", "resolution"],
                "with --zip (it downloads one pre-made zip and writes no dataset manifest)",
            )
        if self.resolution and self.fetch_all_em_resolutions:
            raise InputError("--resolution picks EM levels and --fetch-all-em-resolutions takes every level; give one")
        parse_crops(self.crops)
        self.resolutions  # noqa: B018 - parse check

    # -- parsed values ---------------------------------------------------

    @property
    def class_names(self) -> list[str] | None:
        """The --classes filter; None = every class."""
        return parse_list(self.classes, "--classes") or None

    @property
    def dataset_names(self) -> list[str] | None:
        """The --datasets filter; None = every dataset."""
        return parse_list(self.datasets, "--datasets") or None

    @property
    def instance_class_names(self) -> list[str] | None:
        """The --instance-classes override; None = the challenge's table."""
        return parse_list(self.instance_classes, "--instance-classes") or None

    @property
    def retry(self) -> RetryPolicy:
        """How S3 and HTTP reads retry: --retries attempts with backoff."""
        return RetryPolicy(attempts=self.retries)

    @property
    def resolutions(self) -> list[float] | None:
        """The --resolution voxel sizes (nm); None = the default level rule."""
        return parse_floats(self.resolution, "--resolution", positive=True) or None
