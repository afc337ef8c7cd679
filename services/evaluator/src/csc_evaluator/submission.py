"""Submission input: accepted forms, safe extraction, and finding the (crop, class) volumes.

Forms (UPSTREAM.md §9.1): a zip; a directory holding exactly one zip; an
unzipped zarr directory. A zip is checked completely *before* anything is
written (``csc_common.submission.zipsafety``: member count, total uncompressed size,
per-member compression ratio, symlinks and other special files, absolute
paths, ``..`` escapes, duplicate names, encryption; refused on the first
problem) and then extracted into a fresh temporary directory, never a cache
next to the zip. Each refusal names the member.

Inside the zarr: a single nested ``*.zarr`` folder is used as the root
(nothing is moved on disk); crop groups may be named ``<N>`` instead of
``crop<N>`` (used only when no name matches directly, as upstream); a class
entry is an array or a group (OME-NGFF multiscale or plain levels).
"""

import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from csc_common.errors import SubmissionError
from csc_common.submission.zipsafety import iter_zip_problems

from csc_evaluator.constants import Constants

log = logging.getLogger("csc.evaluate")

_CHUNK = 1 << 20


def extract_zip(zip_path: Path, target: Path, constants: Constants) -> None:
    """Check then extract ``zip_path`` into the (new, empty) folder ``target``; sizes are enforced while writing."""
    where = str(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(f"{where}: not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        problem = next(iter_zip_problems(infos, constants.zip_limits), None)
        if problem is not None:
            raise SubmissionError(f"{where}: {problem.message}")
        written = 0
        for info in infos:
            dest = target / info.filename
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(dest, "wb") as out:
                    while block := src.read(_CHUNK):
                        written += len(block)
                        if written > constants.max_uncompressed_size:
                            raise SubmissionError(
                                f"{where}: member {info.filename!r}: extracted data exceeds MAX_UNCOMPRESSED_SIZE"
                            )
                        out.write(block)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise SubmissionError(f"{where}: member {info.filename!r} cannot be extracted ({exc})") from None


@dataclass
class Submission:
    """A submission opened for scoring: its zarr root, and the temp dir to remove afterwards."""

    source: Path
    root: Path
    tmp: Path | None = None

    def close(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> "Submission":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refuse_links(root: Path) -> None:
    """An unzipped submission may not contain symlinks (they could point anywhere on the host)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            if os.path.islink(os.path.join(dirpath, name)):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                raise SubmissionError(f"{root}: entry {rel!r} is a symlink, which is not allowed")


def find_zarr_root(path: Path) -> Path:
    """The folder to read crops from: ``path`` itself, or the single nested ``*.zarr`` folder inside it."""
    nested = sorted(p for p in path.rglob("*.zarr") if p.is_dir() and not p.is_symlink())
    if len(nested) > 1:
        shown = ", ".join(str(p.relative_to(path)) for p in nested[:3])
        raise SubmissionError(f"{path}: contains {len(nested)} zarr folders ({shown}...); submit exactly one")
    if nested:
        log.warning("%s: zarr folder nested at %s; using it as the submission root", path, nested[0].relative_to(path))
        return nested[0]
    return path


def open_submission(path: str | Path, constants: Constants, *, work_dir: str | Path | None = None) -> Submission:
    """Open any accepted submission form; a zip is extracted into a fresh temp dir."""
    p = Path(path)
    if not p.exists():
        raise SubmissionError(f"{p}: submission not found")
    if p.is_dir():
        zips = sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() == ".zip")
        if len(zips) > 1:
            raise SubmissionError(f"{p}: holds {len(zips)} zip files; expected exactly one (or a zarr folder)")
        if not zips:
            _refuse_links(p)
            return Submission(p, find_zarr_root(p))
        p = zips[0]
    if not p.is_file() or not zipfile.is_zipfile(p):
        raise SubmissionError(f"{p}: not a zip file, a folder holding one zip, or a zarr folder")
    if work_dir is None:
        work_dir = _ram_work_dir(p)
    tmp = Path(tempfile.mkdtemp(prefix="csc-evaluate-", dir=work_dir))
    try:
        extract_zip(p, tmp / "submission", constants)
        return Submission(p, find_zarr_root(tmp / "submission"), tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ram_work_dir(zip_path: Path) -> str | None:
    """/dev/shm when the extracted submission is small next to free RAM and shm space; else the system temp.

    Why: a submission is thousands of tiny chunk files; creating and deleting them on a
    slow disk costs more than scoring small crops. The data lives in RAM only during the run.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.environ.get("TMPDIR"):
        return None
    try:
        with zipfile.ZipFile(zip_path) as zf:
            total = sum(i.file_size for i in zf.infolist()) + 4096 * len(zf.infolist())
        st = os.statvfs(shm)
        import psutil

        free_ram = psutil.virtual_memory().available
    except (OSError, zipfile.BadZipFile):
        return None
    if total * 2 < st.f_bavail * st.f_frsize and total * 8 < free_ram and os.access(shm, os.W_OK):
        return str(shm)
    return None


def _subdirs(path: Path) -> list[str]:
    return sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def match_crops(submission_root: Path, truth_crops: list[str]) -> dict[str, Path]:
    """Truth crop name -> submitted crop folder, with the ``<N>`` -> ``crop<N>`` fallback of upstream."""
    pred = _subdirs(submission_root)
    direct = {c: submission_root / c for c in truth_crops if c in pred}
    if direct:
        return direct
    prefixed = {f"crop{c}": submission_root / c for c in pred}
    found = {c: prefixed[c] for c in truth_crops if c in prefixed}
    if not found:
        raise SubmissionError(
            f"{submission_root}: no crop of the ground truth found in the submission "
            f"(submitted: {', '.join(pred[:5]) or 'nothing'}; expected names like {truth_crops[0] if truth_crops else 'crop<N>'})"
        )
    return found


def is_volume_entry(path: Path) -> bool:
    """A class entry: a zarr array, or a group (OME-NGFF multiscale or plain levels)."""
    return path.is_dir() and any((path / f).is_file() for f in (".zarray", ".zgroup", ".zattrs"))


def submitted_classes(crop_dir: Path) -> dict[str, Path]:
    """Class name -> entry path for one submitted crop."""
    return {name: crop_dir / name for name in _subdirs(crop_dir) if is_volume_entry(crop_dir / name)}
