"""What one chunk of a Zarr-2 array may hold: its ``.zarray`` read for limits, and its codec held to them.

Part of ``csc_common.submission.reader``: a submission member that is a chunk
may be no larger than its array's chunk once encoded (``ArrayMeta.chunk_limit``,
judged from the zip's declared size before anything is inflated), and its
codec may not make more than one chunk of it (``ArrayMeta.codec_problem``,
judged from the codec's own header, or a trial inflation that stops one byte
past the chunk, before the codec is let loose on it).
"""

import bz2
import json
import lzma
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from csc_common.submission.zipsafety import size_text

CHUNK_BYTES_MAX = 1 << 30
"""Bytes one chunk may hold decoded: zarr inflates a chunk whole, and blosc cannot exceed 2 GiB."""
WIDEST_ITEM = 8
"""Bytes per voxel of the widest numeric dtype (a filter may widen the encoded chunk to it)."""


def _ints(value: Any, what: str, *, low: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be a list of integers, got {value!r}")
    if any(v < low for v in value):
        raise ValueError(f"{what} must be integers >= {low}, got {value}")
    return tuple(value)


@dataclass(frozen=True)
class ArrayMeta:
    """What bounds an array's chunks, from its ``.zarray``."""

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    separator: str
    codec: str | None
    """The compressor's id (``blosc``, ``zstd``...), None for none."""
    filtered: bool

    @classmethod
    def parse(cls, raw: bytes, path: str) -> "ArrayMeta":
        """Read ``.zarray`` bytes; ValueError saying what is wrong."""
        try:
            meta = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        if meta.get("zarr_format") != 2:
            raise ValueError(f"zarr_format is {meta.get('zarr_format')!r}, expected 2")
        shape = _ints(meta.get("shape"), "shape", low=0)
        chunks = _ints(meta.get("chunks"), "chunks", low=1)
        if len(chunks) != len(shape):
            raise ValueError(f"chunks {list(chunks)} do not match the {len(shape)} dimensions of shape {list(shape)}")
        if "dtype" not in meta:
            raise ValueError("no dtype")
        try:
            dtype = np.dtype(meta["dtype"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dtype {meta.get('dtype')!r} is not a dtype ({exc})") from None
        separator = meta.get("dimension_separator") or "."
        if separator not in (".", "/"):
            raise ValueError(f"dimension_separator {separator!r} is neither '.' nor '/'")
        compressor = meta.get("compressor")
        if compressor is not None and not (isinstance(compressor, dict) and isinstance(compressor.get("id"), str)):
            raise ValueError(f"compressor {compressor!r} is neither null nor a codec with an id")
        codec = compressor["id"] if compressor is not None else None
        return cls(path, shape, chunks, dtype, separator, codec, bool(meta.get("filters")))

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one decoded chunk."""
        return math.prod(self.chunks) * self.dtype.itemsize

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks along each axis."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def decoded_limit(self) -> int:
        """Most bytes the compressor may give back for one chunk: the chunk, widened to 8 bytes a voxel by filters."""
        item = max(self.dtype.itemsize, WIDEST_ITEM) if self.filtered else self.dtype.itemsize
        return math.prod(self.chunks) * item

    @property
    def chunk_limit(self) -> int:
        """Most bytes one chunk member can hold: ``decoded_limit`` plus any codec's worst overhead."""
        return self.decoded_limit + self.decoded_limit // 64 + 4096 if self.codec else self.decoded_limit

    def codec_problem(self, data: bytes | memoryview) -> str | None:
        """Why a chunk's bytes would inflate beyond one chunk, as the compressor's own header declares or a
        bounded trial shows (``_decoded_size``), checked before the compressor is let loose on them; None if fine."""
        declared = _decoded_size(self.codec, data, self.decoded_limit) if self.codec else None
        if declared is None or declared <= self.decoded_limit:
            return None
        amount = "more than a chunk" if self.codec in _STREAMS else f"{size_text(declared)}, more than a chunk"
        return (
            f"its {self.codec} data inflate to {amount} {list(self.chunks)} of {self.dtype} holds "
            f"({self.decoded_limit} bytes)"
        )

    def chunk_problem(self, max_chunks: int) -> str | None:
        """Why these chunks are absurd, or None."""
        if self.chunk_bytes > CHUNK_BYTES_MAX:
            return (
                f"chunks {list(self.chunks)} of {self.dtype} hold {size_text(self.chunk_bytes)} each, "
                f"more than the {size_text(CHUNK_BYTES_MAX)} a chunk may hold"
            )
        count = math.prod(self.grid)
        if count > max_chunks:
            return (
                f"chunks {list(self.chunks)} cut shape {list(self.shape)} into {count} chunks, more than a zip "
                f"may hold members ({max_chunks}, CSC_MAX_ZIP_MEMBERS)"
            )
        return None

    def is_chunk(self, rel: str) -> bool:
        """Whether ``rel`` (a name inside the array's folder) is the key of a chunk of its grid."""
        if not self.shape:
            return rel == "0"
        parts = rel.split(self.separator)
        return len(parts) == len(self.grid) and all(p.isdigit() and int(p) < g for p, g in zip(parts, self.grid))

    def chunk_key(self, index: Sequence[int]) -> str:
        key = self.separator.join(str(i) for i in index) if self.shape else "0"
        return f"{self.path}/{key}" if self.path else key

    def chunk_slices(self, index: Sequence[int]) -> tuple[slice, ...]:
        return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, self.chunks, self.shape, strict=True))


def _zstd_content_size(data: bytes | memoryview) -> int | None:
    """The decoded size a zstd frame header declares (RFC 8878 3.1.1.1), None where it declares none."""
    if len(data) < 6 or data[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = data[4]
    single = (descriptor >> 5) & 1
    start = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]
    width = (single, 2, 4, 8)[descriptor >> 6]
    if not width or len(data) < start + width:
        return None
    value = int.from_bytes(data[start : start + width], "little")
    return value + 256 if width == 2 else value


_STREAMS: dict[str, Any] = {
    "zlib": lambda: zlib.decompressobj(),
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "bz2": bz2.BZ2Decompressor,
    "lzma": lzma.LZMADecompressor,
}


def _decoded_size(codec: str, data: bytes | memoryview, limit: int) -> int | None:
    """How many bytes ``codec`` would make of ``data``, without making more than ``limit + 1`` of them.

    Blosc (a header whose compressed size is the data's own), LZ4 (numcodecs' 4-byte
    prefix) and zstd declare it in a header; for the stream codecs a trial inflation
    stops one byte past ``limit``. None where neither applies (other codecs, a header
    that does not fit the data, a malformed stream: decoding will say).
    """
    if codec == "blosc" and len(data) >= 16 and int.from_bytes(data[12:16], "little") == len(data):
        return int.from_bytes(data[4:8], "little")
    if codec == "lz4" and len(data) >= 4:
        return int.from_bytes(data[:4], "little")
    if codec == "zstd":
        return _zstd_content_size(data)
    if codec in _STREAMS:
        try:
            return len(_STREAMS[codec]().decompress(data, limit + 1))
        except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
            return None
    return None
