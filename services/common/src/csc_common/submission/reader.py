"""Read a submission where it lies, a zip through zarr's ``ZipStore`` or a zarr folder: nothing is extracted.

One reader for the evaluator (which scores what it reads) and ``csc-pack --check``
(which reads the same members the same way and reports), so the check fails
exactly where the evaluator would, with the same message.

Why no extraction: a full-size submission (the 413 real rows are 87.7 GB as
uint8) would have to land somewhere, RAM-backed /dev/shm or a disk, before a
single row is scored, and a hostile zip would decide how much. Read in place,
the only bytes ever inflated are the chunks a row reads, each one bounded
before it is inflated; a killed run leaves nothing behind.

Forms (UPSTREAM.md §9.1): a zip; a folder holding exactly one zip; an unzipped
zarr folder (no symlinks inside). The zarr root is the top, or the one
``*.zarr`` folder nested anywhere (used in place, as the official scorer moves
it up); crop groups are ``crop<N>``, or ``<N>`` where no name matches directly;
a class entry is an array or a group (OME-NGFF multiscale or plain levels).

Public API:

``open_submission(path, limits, rows) -> Submission``
    Find the form, list the members, refuse on the first of ``problems``.
``index_submission(path) -> Submission``
    The same without judging it (``csc-pack --check`` reports every problem).
``Submission.problems(limits, rows)``
    Every broken rule, lazily, judged from the member list and the metadata
    files alone (nothing else is inflated), in this order:

    1. the zip-safety rules of ``zipsafety`` (zips only), then the zarr root
       (more than one nested ``*.zarr`` folder is refused);
    2. metadata files (``.zarray``, ``.zattrs``, ``.zgroup``, ``.zmetadata``)
       at most 1 MiB each and 64 MiB in all, before one is read;
    3. every ``.zarray`` is Zarr-2 array metadata with sane chunks (at most
       ``chunks.CHUNK_BYTES_MAX`` per chunk, no more chunks than a zip may hold members);
    4. every chunk member at most what one chunk of its array can be once
       encoded (``ArrayMeta.chunk_limit``); any other ("stray") file at most
       1 MiB, and strays and metadata at most 64 MiB in all;
    5. the total at most what the rows can need: per row, the largest array
       the evaluator would accept for it (``MAX_VOLUME_SIZE_RATIO`` times its
       voxels, 8 bytes each), plus those 64 MiB.
``Submission.match_crops / classes / is_array``
    Crop and class entries, from the member list.
``Submission.array_for(node, target) -> (zarr.Array, SourceGrid)``
    The array the evaluator reads for a (crop, class) entry on ``target``'s
    grid, with the 3D and ``MAX_VOLUME_SIZE_RATIO`` guards.
``Submission.read(array)`` / ``Submission.verify(array)``
    Read the whole array, or every chunk block by block and drop it. Each
    member read is held to its limit again before it is inflated (zipfile
    never returns more than the declared size and checks the CRC), and its
    codec may not make more than one chunk of it (the size a blosc, LZ4 or
    zstd header declares, or a trial of zlib, gzip, bz2, lzma that stops one
    byte past the chunk) before the codec is let loose on it; a read error
    names the first bad chunk in grid order, and NaN or infinite values in a
    float array are refused naming their chunk (the scorer would count them
    as background without a word).
``NodeRef`` / ``attach(ref)``
    A picklable handle on a class entry, and this process's open submission for it
    (forked workers reuse the parent's listing and open their own zip handle).

Messages stand alone and name the member (its path inside the zip, in normal form: ``./a//b`` is ``a/b``).
"""

import itertools
import logging
import os
import posixpath
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import zarr
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore, WrapperStore, ZipStore

from csc_common.crops import CropRow
from csc_common.errors import CscError, GeometryError, SubmissionError
from csc_common.geometry import Geometry
from csc_common.submission.align import SourceGrid, check_size_ratio, choose_non_ome_level, max_volume_size_ratio
from csc_common.submission.chunks import WIDEST_ITEM, ArrayMeta
from csc_common.submission.zipsafety import ZIP, ZipLimits, ZipProblem, iter_zip_problems, size_text
from csc_common.volumes import choose_level, parse_multiscales

log = logging.getLogger("csc.submission")

META_NAMES = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata"})
SMALL_FILE_MAX = 1 << 20
"""Bytes a metadata or stray file may hold."""
SMALL_TOTAL_MAX = 64 << 20
"""Bytes all metadata and stray files may hold together."""
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, NotImplementedError)


@dataclass(frozen=True)
class NodeRef:
    """A class entry of a submission, picklable for a worker process: the zip (or folder) and the entry's path."""

    source: str
    node: str


class _GuardedStore(WrapperStore[Store]):
    """A read-only zarr store that reads only listed members, each held to its limit before it is inflated."""

    def __init__(self, store: Store, sub: "Submission") -> None:
        super().__init__(store)
        self._sub = sub

    def _with_store(self, store: Store) -> "_GuardedStore":
        return type(self)(store, self._sub)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        size = self._sub.sizes.get(key)
        if size is None:
            return None
        problem = self._sub.member_problem(key, size)
        if problem is not None:
            raise SubmissionError(problem)
        try:
            buf = await self._store.get(self._sub.spelled.get(key, key), prototype, byte_range)
        except _READ_ERRORS as exc:
            raise SubmissionError(f"member {key!r} cannot be read ({exc})") from None
        array = self._sub.chunk_of(key)
        if buf is not None and array is not None and array.codec and byte_range is None:
            problem = array.codec_problem(buf.as_numpy_array().data)  # a view, not a copy
            if problem is not None:
                raise SubmissionError(f"member {key!r}: {problem}")
        return buf

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return key in self._sub.sizes


class Submission:
    """A submission opened for reading in place. Use ``open_submission``; close it (or use ``with``) when done.

    ``source`` is the zip (or zarr folder) itself, ``sizes`` its files and their
    (declared uncompressed) sizes by member name, ``root`` the zarr root inside
    (``""`` or ``"<name>.zarr/"``).
    """

    def __init__(
        self, source: Path, files: dict[str, int], folders: Iterable[str] = (), zf: zipfile.ZipFile | None = None
    ) -> None:
        self.source = source
        self.sizes = {posixpath.normpath(n): size for n, size in files.items()}
        self.spelled = {posixpath.normpath(n): n for n in files if posixpath.normpath(n) != n}
        """Member names as the zip spells them, where that differs from the normal form zarr asks for."""
        self.arrays: dict[str, ArrayMeta] = {}
        self._zf = zf
        self._judged = False
        self._store: _GuardedStore | None = None
        self._store_pid = 0
        self._children: dict[str, set[str]] = {}
        for name in itertools.chain(self.sizes, (posixpath.normpath(f) + "/" for f in folders)):
            parts = name.split("/")
            for depth in range(1, len(parts)):
                self._children.setdefault("/".join(parts[: depth - 1]), set()).add(parts[depth - 1])
        self.nested = sorted(d for d in self._folders() if posixpath.basename(d).endswith(".zarr"))
        self.root = self.nested[0] + "/" if len(self.nested) == 1 else ""

    @property
    def is_zip(self) -> bool:
        return self.source.is_file()

    def _folders(self) -> Iterator[str]:
        for parent, names in self._children.items():
            for n in names:
                yield f"{parent}/{n}" if parent else n

    # ------------------------------------------------------------ judging
    def problems(self, limits: ZipLimits, rows: Sequence[CropRow] = ()) -> Iterator[ZipProblem]:
        """Every broken rule (module doc, 1-5), lazily; ``where`` is the member or ``ZIP``.

        Judged once: the zip's member list is dropped when this ends (only names and sizes are kept).
        """
        if self._judged:
            raise RuntimeError("a submission is judged once")
        self._judged = True
        try:
            yield from self._problems(limits, rows)
        finally:
            if self._zf is not None:
                self._zf.close()
                self._zf = None

    def _problems(self, limits: ZipLimits, rows: Sequence[CropRow]) -> Iterator[ZipProblem]:
        if self._zf is not None:
            found = False
            for problem in iter_zip_problems(self._zf.infolist(), limits):
                found = True
                yield problem
            if found:
                return
        if len(self.nested) > 1:
            shown = ", ".join(self.nested[:3])
            yield ZipProblem(
                ZIP,
                f"contains {len(self.nested)} zarr folders ({shown}); submit exactly one "
                f"(with {len(self.nested)} nested .zarr folders the root is ambiguous)",
            )
            return
        yield from self._content_problems(limits, rows)

    def _content_problems(self, limits: ZipLimits, rows: Sequence[CropRow]) -> Iterator[ZipProblem]:
        meta = [n for n in self.sizes if posixpath.basename(n) in META_NAMES]
        small = 0
        for name in meta:
            small += self.sizes[name]
            if self.sizes[name] > SMALL_FILE_MAX:
                yield ZipProblem(name, self._too_big(name, self.sizes[name], SMALL_FILE_MAX, "zarr metadata"))
        if small > SMALL_TOTAL_MAX:
            yield ZipProblem(ZIP, self._small_total(small))
            return
        for name in meta:
            if posixpath.basename(name) != ".zarray" or self.sizes[name] > SMALL_FILE_MAX:
                continue
            path = posixpath.dirname(name)
            try:
                array = ArrayMeta.parse(self._raw(name), path)
            except SubmissionError as exc:
                yield ZipProblem(name, str(exc))
                continue
            except ValueError as exc:
                yield ZipProblem(name, f"member {name!r} is not Zarr-2 array metadata: {exc}")
                continue
            absurd = array.chunk_problem(limits.max_members)
            if absurd:
                yield ZipProblem(name, f"member {name!r}: {absurd}")
                continue
            self.arrays[path] = array
        for name, size in self.sizes.items():
            if posixpath.basename(name) in META_NAMES:
                continue
            problem = self.member_problem(name, size)
            if problem is not None:
                yield ZipProblem(name, problem)
            elif self.chunk_of(name) is None:
                small += size
        if small > SMALL_TOTAL_MAX:
            yield ZipProblem(ZIP, self._small_total(small))
        if rows:
            ratio = max_volume_size_ratio()
            budget = sum(int(ratio * r.geometry.num_voxels) * WIDEST_ITEM for r in rows) + SMALL_TOTAL_MAX
            total = sum(self.sizes.values())
            if total > budget:
                yield ZipProblem(
                    ZIP,
                    f"uncompressed size {size_text(total)} is more than the {len(rows)} test rows can need "
                    f"({size_text(budget)}: per row the largest array the evaluator accepts, MAX_VOLUME_SIZE_RATIO "
                    f"x its voxels x {WIDEST_ITEM} bytes, plus {SMALL_TOTAL_MAX >> 20} MiB of metadata)",
                )

    @staticmethod
    def _too_big(name: str, size: int, limit: int, what: str) -> str:
        return f"member {name!r} is {size_text(size)} uncompressed, more than {what} may hold ({limit} bytes)"

    @staticmethod
    def _small_total(total: int) -> str:
        return (
            f"metadata and stray files (neither zarr metadata nor array chunks) hold {size_text(total)}, "
            f"more than the {SMALL_TOTAL_MAX >> 20} MiB allowed in all"
        )

    def chunk_of(self, name: str) -> ArrayMeta | None:
        """The array whose chunk ``name`` is (its nearest array folder, if the name is a key of its grid)."""
        parent = name
        while parent:
            parent = posixpath.dirname(parent)
            array = self.arrays.get(parent)
            if array is not None:
                return array if array.is_chunk(name[len(parent) + 1 :] if parent else name) else None
        return None

    def member_problem(self, name: str, size: int) -> str | None:
        """Why member ``name`` of ``size`` bytes may not be inflated, or None (rule 4, and 2 for metadata)."""
        if posixpath.basename(name) in META_NAMES:
            return self._too_big(name, size, SMALL_FILE_MAX, "zarr metadata") if size > SMALL_FILE_MAX else None
        array = self.chunk_of(name)
        if array is not None:
            if size <= array.chunk_limit:
                return None
            what = f"a chunk {list(array.chunks)} of {array.dtype} of array {array.path!r} (plus codec overhead)"
            return self._too_big(name, size, array.chunk_limit, what)
        if size > SMALL_FILE_MAX:
            return self._too_big(name, size, SMALL_FILE_MAX, "a file that is neither zarr metadata nor an array chunk")
        return None

    def _raw(self, name: str) -> bytes:
        """A small member's bytes, while judging (later reads go through zarr)."""
        try:
            if self._zf is not None:
                return self._zf.read(self.spelled.get(name, name))
            return (self.source / name).read_bytes()
        except _READ_ERRORS as exc:
            raise SubmissionError(f"member {name!r} cannot be read ({exc})") from None

    # ------------------------------------------------------------ listing
    def entries(self, folder: str) -> list[str]:
        """Sub-folders of ``folder`` (a path from the top, ``""`` for the top), without hidden ones."""
        return sorted(n for n in self._children.get(folder.rstrip("/"), ()) if not n.startswith("."))

    def match_crops(self, wanted: Sequence[str]) -> dict[str, str]:
        """Wanted crop name -> submitted crop folder (from the top), with the ``<N>`` -> ``crop<N>`` fallback."""
        submitted = self.entries(self.root)
        direct = {c: self.root + c for c in wanted if c in submitted}
        if direct:
            return direct
        prefixed = {f"crop{c}": self.root + c for c in submitted}
        found = {c: prefixed[c] for c in wanted if c in prefixed}
        if found:
            return found
        zips = [n for n in self.sizes if n.lower().endswith(".zip")]
        hint = f"; it holds a zip ({zips[0]}): zip the zarr folder itself, not a zip of it" if zips else ""
        raise SubmissionError(
            f"{self.source}: no crop of the ground truth found in the submission "
            f"(submitted: {', '.join(submitted[:5]) or 'nothing'}; expected names like "
            f"{wanted[0] if wanted else 'crop<N>'}){hint}"
        )

    def is_array(self, node: str) -> bool:
        return f"{node}/.zarray" in self.sizes

    def is_entry(self, node: str) -> bool:
        """A class entry: a zarr array, or a group (OME-NGFF multiscale or plain levels)."""
        return any(f"{node}/{m}" in self.sizes for m in (".zarray", ".zgroup", ".zattrs"))

    def classes(self, crop: str) -> dict[str, str]:
        """Class name -> entry path (from the top) for one submitted crop folder."""
        return {n: f"{crop}/{n}" for n in self.entries(crop) if self.is_entry(f"{crop}/{n}")}

    def ref(self, node: str) -> NodeRef:
        return NodeRef(str(self.source), node)

    # ------------------------------------------------------------ reading
    def _zarr_store(self) -> _GuardedStore:
        """This process's zarr store (a forked worker opens its own zip handle)."""
        if self._store is None or self._store_pid != os.getpid():
            inner: Store = ZipStore(self.source, mode="r") if self.is_zip else LocalStore(self.source, read_only=True)
            self._store, self._store_pid = _GuardedStore(inner, self), os.getpid()
        return self._store

    def _open_array(self, path: str) -> Any:
        array = self.arrays.get(path)
        if array is None:
            raise SubmissionError(f"array {path!r}: no valid .zarray")
        if array.dtype.kind not in "biuf":
            raise SubmissionError(f"array {path!r}: dtype {array.dtype} is not numeric")
        try:
            arr = zarr.open_array(store=self._zarr_store(), path=path, mode="r", zarr_format=2)
        except CscError:
            raise
        except Exception as exc:  # zarr raises many types for metadata it cannot use
            raise SubmissionError(f"array {path!r}: unreadable zarr array ({type(exc).__name__}: {exc})") from None
        return arr

    def _group_attrs(self, path: str) -> dict[str, Any]:
        try:
            return dict(zarr.open_group(store=self._zarr_store(), path=path, mode="r", zarr_format=2).attrs)
        except CscError:
            raise
        except Exception as exc:
            raise SubmissionError(f"group {path!r}: unreadable zarr group ({type(exc).__name__}: {exc})") from None

    def _select(self, node: str, target: Geometry) -> tuple[Any, SourceGrid]:
        """The array to read for ``target`` at class entry ``node``, and its grid (the rule of ``align.read_source``).

        Single array: its attrs aliases. OME-NGFF group: the level closest to the
        target voxel size, with that level's transforms. Other groups:
        ``choose_non_ome_level`` over the child arrays.
        """
        if self.is_array(node):
            arr = self._open_array(node)
            return arr, SourceGrid.from_attrs(dict(arr.attrs), node)
        attrs = self._group_attrs(node)
        children = [n for n in self.entries(node) if self.is_array(f"{node}/{n}")]
        if not children:
            raise SubmissionError(f"{node!r}: neither a zarr array (.zarray) nor a group holding arrays")
        arrays = {c: self._open_array(f"{node}/{c}") for c in children}
        if "multiscales" in attrs:
            levels = parse_multiscales(attrs, {c: a.shape for c, a in arrays.items()}, node)
            level = choose_level(levels, target.voxel_size)
            return arrays[level.path], SourceGrid.of(level.geometry)
        grids = {c: SourceGrid.from_attrs(dict(a.attrs), f"{node}/{c}") for c, a in arrays.items()}
        key = choose_non_ome_level([(c, g.voxel_size) for c, g in grids.items()], target.voxel_size)
        return arrays[key], grids[key]

    def array_for(self, node: str, target: Geometry) -> tuple[Any, SourceGrid]:
        """The array to read for ``target`` at class entry ``node`` and its grid, with the guards the evaluator
        applies before reading: 3D, ``MAX_VOLUME_SIZE_RATIO``."""
        arr, grid = self._select(node, target)
        if len(arr.shape) != 3:
            raise GeometryError(f"array {arr.path!r}: expected a 3D array (z, y, x), got shape {tuple(arr.shape)}")
        check_size_ratio(arr.shape, target.shape, where=f"array {arr.path!r}")
        return arr, grid

    def read(self, arr: Any) -> np.ndarray:
        """The whole array, every member guarded; errors and NaN/Inf name the first bad chunk in grid order."""
        meta = self.arrays[arr.path]
        try:
            data = np.asarray(arr[...])
        except Exception:  # noqa: BLE001 - pinned to a chunk below, with a deterministic message
            self._raise_first_bad(arr, meta, itertools.product(*(range(g) for g in meta.grid)))
        self._refuse_non_finite(meta, data, itertools.product(*(range(g) for g in meta.grid)), origin=0)
        return data

    def verify(self, arr: Any) -> None:
        """Read every chunk as ``read`` would, one slab of chunks at a time (memory: a slab, not the array)."""
        meta = self.arrays[arr.path]
        if not meta.shape or 0 in meta.shape:
            self.read(arr)
            return
        rest = [range(g) for g in meta.grid[1:]]
        for i in range(meta.grid[0]):
            z = meta.chunk_slices((i, *([0] * len(rest))))[0]
            try:
                slab = np.asarray(arr[z])
            except Exception:  # noqa: BLE001
                self._raise_first_bad(arr, meta, ((i, *idx) for idx in itertools.product(*rest)))
            self._refuse_non_finite(meta, slab, ((i, *idx) for idx in itertools.product(*rest)), origin=z.start)

    def _chunk_name(self, meta: ArrayMeta, index: Sequence[int]) -> str:
        key = meta.chunk_key(index)
        return f"member {key!r}" if key in self.sizes else f"chunk {key!r} (absent: the array's fill_value)"

    def _raise_first_bad(self, arr: Any, meta: ArrayMeta, indices: Iterable[tuple[int, ...]]) -> NoReturn:
        for index in indices:
            try:
                arr[meta.chunk_slices(index)]
            except CscError:
                raise
            except Exception as exc:  # noqa: BLE001 - a corrupt chunk, a bad codec
                raise SubmissionError(
                    f"{self._chunk_name(meta, index)}: cannot read array data ({type(exc).__name__}: {exc})"
                ) from None
        raise SubmissionError(f"array {meta.path!r}: cannot read array data (no single chunk fails on its own)")

    def _refuse_non_finite(
        self, meta: ArrayMeta, data: np.ndarray, indices: Iterable[tuple[int, ...]], *, origin: int
    ) -> None:
        if data.dtype.kind != "f" or _all_finite(data):
            return
        for index in indices:
            sl = meta.chunk_slices(index)
            local = (slice(sl[0].start - origin, sl[0].stop - origin), *sl[1:]) if sl else sl
            if not _all_finite(data[local]):
                raise SubmissionError(
                    f"{self._chunk_name(meta, index)}: NaN or infinite values in a float prediction "
                    "(the scorer would count them as background); write finite values"
                )

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        if _OPEN.get(str(self.source)) is self:
            del _OPEN[str(self.source)]
        if self._zf is not None:
            self._zf.close()
            self._zf = None
        if self._store is not None and self._store_pid == os.getpid() and self._store._is_open:
            self._store.close()
        self._store = None

    def __enter__(self) -> "Submission":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _all_finite(data: np.ndarray, step: int = 64) -> bool:
    """``np.isfinite(data).all()`` a slab at a time, so the mask never costs a byte per voxel of the whole array."""
    if data.ndim == 0:
        return bool(np.isfinite(data))
    return all(bool(np.isfinite(data[i : i + step]).all()) for i in range(0, max(len(data), 1), step))


_OPEN: dict[str, Submission] = {}
"""Submissions open in this process (and, after a fork, in the parent), by source path."""


def _list_folder(root: Path) -> Submission:
    """An unzipped submission: its files, sizes and folders; symlinks are refused (they could point anywhere)."""
    sizes: dict[str, int] = {}
    folders: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        folders += [Path(os.path.relpath(os.path.join(dirpath, d), root)).as_posix() for d in dirnames]
        for name in (*dirnames, *filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                raise SubmissionError(
                    f"{root}: entry {os.path.relpath(full, root)!r} is a symlink, which is not allowed"
                )
        for name in filenames:
            full = os.path.join(dirpath, name)
            sizes[Path(os.path.relpath(full, root)).as_posix()] = os.stat(full, follow_symlinks=False).st_size
    return Submission(root, sizes, folders)


def index_submission(path: str | Path) -> Submission:
    """Find the submission's form and list its members, judging nothing yet (see ``open_submission``)."""
    p = Path(path)
    if not p.exists():
        raise SubmissionError(f"{p}: submission not found")
    if p.is_dir():
        zips = sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() == ".zip")
        if len(zips) > 1:
            raise SubmissionError(f"{p}: holds {len(zips)} zip files; expected exactly one (or a zarr folder)")
        if not zips:
            return _list_folder(p)
        p = zips[0]
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(
            f"{p}: not a readable zip file ({exc}); expected a zip, a folder holding one zip, or a zarr folder"
        ) from None
    infos = zf.infolist()
    files = {i.filename: i.file_size for i in infos if not i.is_dir()}
    return Submission(p, files, (i.filename for i in infos if i.is_dir()), zf)


def open_submission(path: str | Path, limits: ZipLimits, rows: Sequence[CropRow] = ()) -> Submission:
    """Open a submission to read in place; ``SubmissionError`` on the first problem (``Submission.problems``)."""
    sub = index_submission(path)
    try:
        problem = next(sub.problems(limits, rows), None)
        if problem is not None:
            raise SubmissionError(f"{sub.source}: {problem.message}")
    except BaseException:
        sub.close()
        raise
    if sub.root:
        log.warning("%s: zarr folder nested at %s; using it as the submission root", sub.source, sub.root.rstrip("/"))
    _OPEN[str(sub.source)] = sub
    return sub


def attach(ref: NodeRef) -> Submission:
    """This process's open submission for ``ref``: the parent's (forked workers inherit it) or a fresh open."""
    sub = _OPEN.get(ref.source)
    if sub is None:
        sub = open_submission(ref.source, ZipLimits.from_env())
    return sub
