"""Zip-safety rules for a submission zip, judged from its member list alone (UPSTREAM.md §9.1).

One implementation for two callers: the evaluator refuses a zip on the first
problem before extracting anything; ``csc-pack --check`` reports every problem.
Nothing here opens a file or touches the disk: the rules read only
``ZipFile.infolist()`` (names, sizes, mode bits, flag bits), so a hostile zip
can be judged before a single byte of it is written.

Rules, in the order they are reported: member count, total uncompressed size,
then per member: symlink or special file, encryption, NUL or backslash in the
name, absolute (or drive-letter) path, ``..`` escape, resolving to the
extraction folder itself, duplicate, a file whose name is also a folder of
other members (``a/b`` and ``a/b/c``: no reader can hold both), compression ratio.
"""

import posixpath
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import NamedTuple

from csc_common.env import env_number

GiB = 1024**3
ZIP = "zip"
"""``ZipProblem.where`` of a problem of the whole zip rather than of one member."""
RATIO_MIN_SIZE = 1 << 20
"""Members at most this large (bytes) are exempt from the ratio rule: tiny chunks compress absurdly well."""


@dataclass(frozen=True)
class ZipLimits:
    """Size limits a submission zip must respect. Defaults are the evaluator's."""

    max_uncompressed_size: int = 50 * GiB
    """Total of all members' uncompressed sizes, bytes (env ``MAX_UNCOMPRESSED_SIZE``, as the official scorer)."""
    max_members: int = 2_000_000
    """Number of members (env ``CSC_MAX_ZIP_MEMBERS``; ours, no upstream equivalent)."""
    max_compression_ratio: float = 1100.0
    """Uncompressed/compressed size of one member larger than 1 MiB (env ``CSC_MAX_COMPRESSION_RATIO``; ours).
    Deflate cannot exceed about 1032:1, so a higher ratio means a crafted member."""

    @classmethod
    def from_env(cls) -> "ZipLimits":
        """The limits with any of the three environment variables applied; bad values raise ``InputError``."""
        d = cls()
        return cls(
            max_uncompressed_size=env_number("MAX_UNCOMPRESSED_SIZE", d.max_uncompressed_size, int),
            max_members=env_number("CSC_MAX_ZIP_MEMBERS", d.max_members, int),
            max_compression_ratio=env_number("CSC_MAX_COMPRESSION_RATIO", d.max_compression_ratio, float),
        )


class ZipProblem(NamedTuple):
    """One broken rule: ``where`` is the member's name, or ``ZIP`` for the whole zip.

    ``message`` stands on its own (it names the member, quoted with ``repr`` so
    odd characters show), so callers can print it without ``where``.
    """

    where: str
    message: str


def size_text(n: int) -> str:
    """``n`` bytes for a message, in GiB too when that helps."""
    return f"{n} bytes ({n / GiB:.2f} GiB)" if n >= GiB // 100 else f"{n} bytes"


def _special(info: zipfile.ZipInfo) -> str | None:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "a symlink"
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "a special file (device, fifo or socket)"
    return None


def _path_problem(name: str) -> str | None:
    """Why ``name`` cannot be extracted inside the target folder, or None. Judged on the name only:
    the target is a fresh, empty folder and symlink members are refused, so nothing on disk can redirect it."""
    if "\x00" in name or "\\" in name:
        return "has a NUL or backslash in its name"
    if PurePosixPath(name).is_absolute():
        return "has an absolute path"
    if name[1:2] == ":":
        return "has an absolute path (drive letter)"
    if ".." in PurePosixPath(name).parts:
        return "would extract outside the target directory ('..')"
    if posixpath.normpath(name) == ".":
        return "resolves to the extraction folder itself"
    return None


def _folders(infos: Sequence[zipfile.ZipInfo]) -> set[str]:
    """Every folder some member lies inside (normalised names, as the duplicate rule keys them)."""
    folders: set[str] = set()
    for info in infos:
        parent = posixpath.dirname(posixpath.normpath(info.filename))
        while parent and parent not in folders:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    return folders


def iter_zip_problems(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits) -> Iterator[ZipProblem]:
    """Every broken rule of a zip with members ``infos`` (``ZipFile.infolist()``), in a fixed order.

    Lazy, so a caller that stops at the first problem does no more work than needed.
    """
    if len(infos) > limits.max_members:
        yield ZipProblem(ZIP, f"{len(infos)} members exceed the limit of {limits.max_members} (CSC_MAX_ZIP_MEMBERS)")
    total = sum(i.file_size for i in infos)
    if total > limits.max_uncompressed_size:
        yield ZipProblem(
            ZIP,
            f"uncompressed size {size_text(total)} exceeds the limit of "
            f"{size_text(limits.max_uncompressed_size)} (MAX_UNCOMPRESSED_SIZE)",
        )
    seen: set[str] = set()
    folders = _folders(infos)
    for info in infos:
        name = info.filename
        what = f"member {name!r}"
        special = _special(info)
        if special:
            yield ZipProblem(name, f"{what} is {special}, which is not allowed")
        if info.flag_bits & 0x1:
            yield ZipProblem(name, f"{what} is encrypted")
        path = _path_problem(name)
        if path:
            yield ZipProblem(name, f"{what} {path}")
        key = posixpath.normpath(name)  # 'a/b', 'a//b', 'a/./b' and 'a/b/' all land on a/b
        if key in seen:
            yield ZipProblem(name, f"{what} appears twice")
        seen.add(key)
        if not info.is_dir() and key in folders:
            yield ZipProblem(name, f"{what} is a file, but other members lie inside a folder of that name")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_MIN_SIZE and ratio > limits.max_compression_ratio:
            yield ZipProblem(
                name,
                f"{what} compression ratio {ratio:.0f}:1 exceeds "
                f"{limits.max_compression_ratio:.0f}:1 (CSC_MAX_COMPRESSION_RATIO)",
            )


def zip_problems(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits) -> list[ZipProblem]:
    """All of ``iter_zip_problems``; an empty list means the zip is safe to extract under ``limits``."""
    return list(iter_zip_problems(infos, limits))
