"""The evaluator's side of a submission: open it in place and read one prediction onto a test row's grid.

Nothing is extracted: ``csc_common.submission.reader`` (shared with
``csc-pack --check``, so the check fails exactly where we would) reads a zip's
members through zarr's ``ZipStore``, or an unzipped zarr folder where it lies.
Before a single chunk is read the whole submission is judged from its member
list and metadata: the zip-safety rules, one zarr root, metadata and stray
files small, every chunk member no larger than its array's chunk, and a total
no larger than the test rows can need; each refusal names the member. A
worker process reads only the chunks of its own (crop, class) pair.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from csc_common.classes import ClassKind
from csc_common.crops import CropRow
from csc_common.geometry import Geometry
from csc_common.submission import align, reader
from csc_common.submission.reader import NodeRef, Submission

from csc_evaluator.constants import Constants

log = logging.getLogger("csc.evaluate")


def open_submission(path: str | Path, constants: Constants, rows: Sequence[CropRow] = ()) -> Submission:
    """Open any accepted submission form for reading in place; ``SubmissionError`` on the first problem."""
    return reader.open_submission(path, constants.zip_limits, rows)


def read_prediction(ref: NodeRef, target: Geometry, *, kind: ClassKind) -> np.ndarray:
    """The prediction at ``ref`` on ``target``'s grid: pick the level, guard, read (NaN/Inf refused), align."""
    sub = reader.attach(ref)
    arr, grid = sub.array_for(ref.node, target)
    if grid.voxel_size is None:
        log.warning("%s: no voxel size attrs; matching by shape only", arr.path)
    if grid.translation is None:
        log.warning("%s: no translation attrs; assuming it starts at the target's origin", arr.path)
    return align.align_array(sub.read(arr), grid, target, kind=kind)
