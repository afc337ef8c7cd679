"""Options of ``csc-view`` / ``csc visualize`` (the original's -d/-c/-C/-k plus serving and pictures)."""
# ruff: noqa: UP007, UP045  (argparse-dataclass needs typing.Optional, not X | None)

import re
from dataclasses import dataclass, field
from typing import Literal, Optional

from csc_common.cli import refuse_ignored
from csc_common.errors import InputError

from csc_viewer.catalog import DEFAULT_KINDS, Selection


@dataclass(frozen=True, kw_only=True)
class Config:
    """Show the pipeline's volumes in neuroglancer (EM, truth, predictions, processed, submission), or draw them.

    Without --screenshot/--montage/--chart it serves the selected manifests' volumes on
    --bind-address:--port, prints one URL per dataset and blocks until interrupted.
    """

    manifest: list[str] = field(
        default_factory=list,
        metadata={
            "args": ["-m", "--manifest"],
            "nargs": "*",
            "metavar": "M.json",
            "help": "manifests to show (dataset, predictions, processed, submission, scores); their inputs are "
            "followed, so processed.json alone also finds the EM. Default: the standard ones in --data",
        },
    )
    data: str = field(
        default="data",
        metadata={"help": "folder searched for dataset.json, predictions.json, ... when no --manifest is given"},
    )
    datasets: str = field(
        default="*", metadata={"args": ["-d", "--datasets"], "help": "comma list of dataset names; globs (*) allowed"}
    )
    crops: str = field(
        default="*",
        metadata={
            "args": ["-c", "--crops"],
            "help": "comma list of crop ids (557 or crop557), globs, 'test', 'train' or 'all'",
        },
    )
    classes: str = field(
        default="*", metadata={"args": ["-C", "--classes"], "help": "comma list of class names; globs allowed"}
    )
    kinds: str = field(
        default=DEFAULT_KINDS,
        metadata={
            "args": ["-k", "--kinds"],
            "help": "comma list among em, gt, predictions, processed, "
            "submission (or *); the EM is always shown, as in "
            "the original, unless --no-em",
        },
    )
    em: bool = field(default=True, metadata={"help": "--no-em: do not show the EM"})
    focus: Optional[int] = field(
        default=None, metadata={"help": "crop id the view opens on (default: the smallest selected id of each dataset)"}
    )
    bind_address: str = field(
        default="127.0.0.1", metadata={"help": "address the viewer server listens on (0.0.0.0 inside a container)"}
    )
    port: int = field(
        default=0, metadata={"help": "port of the viewer server (0: any free port)", "min": 0, "max": 65535}
    )
    layout: Literal["4panel", "4panel-alt", "xy", "xz", "yz", "3d", "xy-3d", "xz-3d", "yz-3d"] = field(
        default="4panel", metadata={"help": "neuroglancer layout of the view and the screenshot"}
    )
    wait: bool = field(
        default=True,
        metadata={"help": "--no-wait: print the URL(s) and return at once (the server stops with the process)"},
    )
    screenshot: Optional[str] = field(
        default=None,
        metadata={
            "metavar": "OUT.png",
            "help": "render the view headless (chromium) to this PNG, one per dataset "
            "(OUT-<dataset>.png when several), and exit",
        },
    )
    size: str = field(default="1024x768", metadata={"help": "screenshot size WIDTHxHEIGHT in pixels"})
    montage: Optional[str] = field(
        default=None,
        metadata={
            "metavar": "OUT.png",
            "help": "write a browser-free PNG of orthogonal slices per crop and exit; several crops: "
            "OUT-crop<N>.png each plus OUT.png stacking them (or put {crop} in the name)",
        },
    )
    scores: Optional[str] = field(
        default=None, metadata={"metavar": "scores.json", "help": "scores manifest for --chart"}
    )
    chart: Optional[str] = field(
        default=None, metadata={"metavar": "OUT.png", "help": "write a bar chart of per-class scores and exit"}
    )
    chromium: str = field(default="/usr/bin/chromium", metadata={"help": "browser binary for --screenshot"})
    chromedriver: str = field(default="/usr/bin/chromedriver", metadata={"help": "driver binary for --screenshot"})
    timeout: float = field(
        default=120.0, metadata={"help": "seconds to wait for the headless browser's picture", "gt": 0}
    )

    def __post_init__(self) -> None:
        parse_size(self.size)
        self.selection  # noqa: B018 - parse check of -d/-c/-C/-k
        if not self.chart:
            refuse_ignored(self, ["scores"], "without --chart (the scores manifest is only charted)")

    @property
    def selection(self) -> Selection:
        """The ``-d/-c/-C/-k`` filters (and --no-em), parsed."""
        return Selection.parse(
            datasets=self.datasets, crops=self.crops, classes=self.classes, kinds=self.kinds, em=self.em
        )

    @property
    def viewport(self) -> tuple[int, int]:
        """``--size`` as (width, height) in pixels."""
        return parse_size(self.size)


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x768"`` -> (1024, 768); each side 16..8192 pixels."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or not (16 <= int(m.group(1)) <= 8192 and 16 <= int(m.group(2)) <= 8192):
        raise InputError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1024x768")
    return int(m.group(1)), int(m.group(2))
